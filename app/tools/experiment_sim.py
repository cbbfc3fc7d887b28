"""`reco bench experiment`: experiments end to end, through the real serving and ingest functions.

A tenant of generated data (its own database), two scenarios and two experiments:

- ``aa`` in scenario ``email``: two identical variants (an A/A test: the report must find nothing);
- ``ab`` in scenario ``home``: a treatment whose users click shown features more often, by a known
  relative effect (planted in the simulated users' behaviour, as the real effect of a ranking
  change is not known in advance), sized for 80 % power by reco.stat_sample_size.

Each simulated visit is a REST request's SQL call (reco.api_serve, which assigns the variant and
records the exposure); a click is a use event of a shown feature, ingested with reco.ingest_events
(which marks the exposure used). Heavier users (more uses before the experiment) click more, as
real ones do: the pre-period is the CUPED covariate. Then both reports are printed."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from app import db


@dataclass
class SimResult:
    users: int
    visits: int
    clicks: int
    serve_ms: float
    ingest_s: float
    report_s: float


def setup(url: str, *, effect: float, base_rate: float, looks: int) -> int:
    """Scenarios, experiments and a key; returns the users needed per arm (80 % power)."""
    with db.connect(url, autocommit=True) as conn:
        per_arm = conn.execute("SELECT reco.stat_sample_size(%s, %s, true, 0.05, 0.8)",
                               (base_rate, effect)).fetchone()["stat_sample_size"]
        conn.execute("SELECT reco.upsert_scenario('home', '{}', 'the home page')")
        conn.execute("SELECT reco.upsert_scenario('email', '{\"weight_popularity\": 0.3}', 'the weekly email')")
        conn.execute("SELECT reco.create_experiment('aa', '[{\"name\": \"a1\"}, {\"name\": \"a2\"}]',"
                     " '{\"scenario\": \"email\", \"primary_metric\": \"clicked\", \"guardrail_metrics\": [\"uses\"],"
                     "   \"secondary_metrics\": [\"click_rate\", \"adoption\"]}')")
        conn.execute("SELECT reco.create_experiment('ab', %s, %s)", (
            json.dumps([{"name": "control"}, {"name": "boost", "overrides": {"weight_usercf": 0.3}}]),
            json.dumps({"scenario": "home", "primary_metric": "clicked", "secondary_metrics": ["click_rate", "uses"],
                        "guardrail_metrics": ["adoption"], "looks": looks, "planned_users": 2 * int(per_arm),
                        "oec": {"clicked": 1, "uses": 0.5}})))
        conn.execute("SELECT reco.start_experiment('aa')")
        conn.execute("SELECT reco.start_experiment('ab')")
    return int(per_arm)


def simulate(url: str, users: int, *, effect: float, base_rate: float, seed: int = 1,
             visits_per_user: int = 1) -> SimResult:
    """Half the users visit the email scenario (the A/A test), the other half the home page (the
    A/B test), ``visits_per_user`` times; a click is drawn per visit. (Two populations: a use of a
    feature shown in both places would count as a click in both experiments.)"""
    rng = np.random.default_rng(seed)
    with db.connect(url, autocommit=True) as conn:
        key = conn.execute("SELECT reco.create_api_key(NULL, 'simulator') AS k").fetchone()["k"]
        rows = conn.execute(
            "SELECT u.user_id, coalesce(sum(i.uses), 0) AS uses FROM reco.users u"
            " LEFT JOIN reco.interactions i ON i.tenant_id = u.tenant_id AND i.user_key = u.user_key"
            " WHERE u.tenant_id = reco.tenant_id(NULL) GROUP BY u.user_id ORDER BY u.user_id LIMIT %s",
            (users,)).fetchall()
        ids = [r["user_id"] for r in rows]
        activity = np.array([float(r["uses"]) for r in rows])
        # a user's propensity to click: proportional to their past activity (mean 1), capped
        propensity = np.minimum(3.0, (activity + 1) / (activity.mean() + 1))
        visits = clicks = 0
        serve_s = ingest_s = 0.0
        half = len(ids) // 2
        for visit in range(visits_per_user):
            for scenario, group in (("email", ids[:half]), ("home", ids[half:])):
                offset = 0 if scenario == "email" else half
                t = time.perf_counter()
                served = conn.execute(
                    "SELECT u.id, reco.api_serve(%s, 'recommendations', u.id, 5,"
                    " jsonb_build_object('scenario', %s::text),"
                    " 'sim-' || %s || '-' || %s || '-' || u.id, true, false)::jsonb AS body"
                    " FROM unnest(%s::text[]) WITH ORDINALITY AS u(id, o) ORDER BY u.o",
                    (key, scenario, scenario, visit, group)).fetchall()
                serve_s += time.perf_counter() - t
                visits += len(served)
                events = []
                now = datetime.now(UTC).isoformat()
                for i, r in enumerate(served):
                    body = r["body"]
                    lift = effect if body["variant"] == "boost" else 0.0
                    p = min(0.95, base_rate * (1 + lift) * propensity[offset + i])
                    if body["items"] and rng.random() < p:
                        item = body["items"][int(rng.integers(len(body["items"])))]
                        events.append({"event_id": f"sim-{scenario}-{visit}-{r['id']}", "user_id": r["id"],
                                       "feature_id": item["feature_id"], "occurred_at": now})
                t = time.perf_counter()
                for lo in range(0, len(events), 5000):
                    conn.execute("SELECT reco.ingest_events(%s::jsonb)", (json.dumps(events[lo:lo + 5000]),))
                ingest_s += time.perf_counter() - t
                clicks += len(events)
        t = time.perf_counter()
        conn.execute("SELECT count(*) FROM reco.experiment_report('ab')").fetchone()
        report_s = time.perf_counter() - t
    return SimResult(len(ids), visits, clicks, serve_s * 1000 / max(visits, 1), ingest_s, report_s)


def report_at_scale(url: str, users: int, exposures: int, seed: float = 0.5) -> tuple[float, float]:
    """The report's cost at scale: ``users`` more users and ``exposures`` exposures rows of a
    third experiment ('scale', in its own scenario), written by SQL (not served: this times the
    report, not serving), 10 % of them used. Returns (seconds to write, seconds for the report)."""
    with db.connect(url, autocommit=True) as conn:
        t = time.perf_counter()
        conn.execute("SELECT setseed(%s)", (seed,))
        conn.execute("SELECT reco.upsert_scenario('scale', '{}')")
        conn.execute("SELECT reco.create_experiment('scale', '[{\"name\": \"a\"}, {\"name\": \"b\"}]',"
                     " '{\"scenario\": \"scale\", \"secondary_metrics\": [\"click_rate\", \"uses\"]}')")
        conn.execute("SELECT reco.start_experiment('scale')")
        for lo in range(0, users, 20_000):
            conn.execute("SELECT reco.upsert_users(jsonb_agg(jsonb_build_object('user_id', 'scale-' || g)))"
                         " FROM generate_series(%s::int, %s::int) g", (lo, min(users, lo + 20_000) - 1))
        conn.execute("""
            INSERT INTO reco.exposures (tenant_id, request_id, user_key, feature_keys, segment, variant, shown_at,
                                        used_keys, scenario, experiment_id)
            SELECT u.tenant_id, 'scale-' || g, u.user_key, f.keys, '*=*', a.variant,
                   now() - random() * interval '6 days',
                   CASE WHEN random() < 0.1 THEN f.keys[1:1] ELSE '{}' END, 'scale', e.experiment_id
            FROM generate_series(0, %s::int - 1) g
            JOIN reco.users u ON u.tenant_id = reco.tenant_id(NULL) AND u.user_id = 'scale-' || (g %% %s::int)
            CROSS JOIN (SELECT array_agg(feature_key) AS keys FROM (SELECT feature_key FROM reco.features
                        WHERE tenant_id = reco.tenant_id(NULL) LIMIT 5) x) f
            CROSS JOIN reco.experiments e
            CROSS JOIN LATERAL reco.assignment(u.user_id, 'scale') a
            WHERE e.name = 'scale'""", (exposures, users))
        conn.execute("ANALYZE reco.exposures")
        write_s = time.perf_counter() - t
        t = time.perf_counter()
        conn.execute("SELECT count(*) FROM reco.experiment_report('scale')").fetchone()
        return write_s, time.perf_counter() - t
