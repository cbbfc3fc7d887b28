"""`reco bench churn --data generated`: the churn model against a planted truth.

`reco generate --churn` data (app/tools/churn_sim.py: users disengage, fade and leave, by plan and segment) is
imported through the product's CSV import into tenant ``churn-generated``; the model is trained on rolling
snapshots that end before the truth's snapshot day (``until``: nothing from that day on is read for a label) and
scores every user as of that day. The truth says, for each user still there at the snapshot, the planted
probability of leaving within the next 14 days and whether they did: the model's AUC is printed beside the
planted probability's own AUC (the best any model can do on these users), and the precision at the tier
threshold the retention list's high tier uses (churn_tier_high, 0.70).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import psycopg
from psycopg.rows import dict_row

from app.importer import import_csv
from app.tools import churn_sim
from app.tools.demodata import generate
from jobs.churn import brier, score, train

TENANT = "churn-generated"
#: the retention list's high tier (the product's default churn_tier_high)
THRESHOLD = churn_sim.TIER_CUTS[0]


@dataclass
class Result:
    users: int
    alive: int
    churned: int
    snapshot: str
    truth_auc: float
    model_auc: float = 0.0
    model_brier: float = 0.0
    active: str = ""
    validation_auc: dict[str, float] = field(default_factory=dict)
    precision: float | None = None
    flagged: int = 0
    truth_precision: float | None = None
    truth_flagged: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    #: the same users against the product's label (no activity in the 14 days from the snapshot day)
    label_auc: float = 0.0
    label_truth_auc: float = 0.0
    inactive: int = 0


def _precision(p: np.ndarray, y: np.ndarray, cut: float) -> tuple[float | None, int]:
    flagged = p >= cut
    n = int(flagged.sum())
    return (float(y[flagged].mean()) if n else None), n


def run(url: str, out_dir: Path, users: int = 20_000, days: int = 120, seed: int = 11,
        log: Callable[[str], None] = print) -> Result:
    t0 = time.perf_counter()
    generate(out_dir, users=users, days=days, seed=seed, churn=True)
    gen_s = time.perf_counter() - t0
    truth = json.loads((out_dir / "churn_truth.json").read_text())
    snap = datetime.fromisoformat(truth["snapshot"].replace("Z", "+00:00"))
    as_of = snap.date()  # features read events before this day's 00:00 (at most a day before the truth's instant)
    rows = list(csv.DictReader((out_dir / "churn_truth.csv").open()))
    log(f"generated {users:,} users over {days} days with planted churn in {gen_s:.1f} s; "
        f"snapshot {snap:%Y-%m-%d %H:%M}")
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SELECT reco.drop_tenant(%s) WHERE EXISTS (SELECT 1 FROM reco.tenants WHERE slug = %s)",
                     (TENANT, TENANT))
        conn.execute("SELECT reco.create_tenant(%s)", (TENANT,))
    t = time.perf_counter()
    for kind in ("plans", "features", "users", "events"):
        import_csv(url, kind, out_dir / f"{kind}.csv", tenant=TENANT)
    load_s = time.perf_counter() - t
    log(f"imported in {load_s:.1f} s; training on snapshots before {as_of} ...")
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        t = time.perf_counter()
        tr = train(conn, TENANT, until=as_of, note="reco bench churn --data generated")
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        score(conn, TENANT, as_of)
        score_s = time.perf_counter() - t
        # the product's own label for the same users: no activity event in the 14 days from the snapshot day
        inactive = {r["user_id"]: r["inactive"] for r in conn.execute(
            """SELECT u.user_id, NOT EXISTS (
                   SELECT 1 FROM reco.events e WHERE e.tenant_id = u.tenant_id AND e.user_key = u.user_key
                     AND e.occurred_at >= %s::date AND e.occurred_at < %s::date + 14) AS inactive
               FROM reco.users u WHERE u.tenant_id = reco.tenant_id(%s)""", (as_of, as_of, TENANT))}
        got = {r["user_id"]: r["probability"] for r in conn.execute(
            """SELECT u.user_id, s.probability FROM reco.churn_scores s
               JOIN reco.users u ON u.tenant_id = s.tenant_id AND u.user_key = s.user_key
               WHERE s.tenant_id = reco.tenant_id(%s) AND s.as_of = %s""", (TENANT, as_of))}
    # the users the truth and the model both speak of: still there at the snapshot, and scored (eligible)
    alive = [r for r in rows if r["alive_at_snapshot"] == "true" and r["user_id"] in got]
    y = np.array([r["churned_in_window"] == "true" for r in alive])
    p_model = np.array([got[r["user_id"]] for r in alive], dtype=float)
    p_true = np.array([float(r["p_churn_14d"]) for r in alive])
    res = Result(users=users, alive=len(alive), churned=int(y.sum()), snapshot=truth["snapshot"],
                 truth_auc=churn_sim.auc(p_true, y) or 0.0, model_auc=churn_sim.auc(p_model, y) or 0.0,
                 model_brier=brier(y, p_model), active=tr.active_kind,
                 validation_auc={k: v["auc"] for k, v in tr.metrics.items()},
                 seconds={"generate": gen_s, "import": load_s, "train": train_s, "score": score_s})
    res.precision, res.flagged = _precision(p_model, y, THRESHOLD)
    z = np.array([inactive[r["user_id"]] for r in alive])
    res.label_auc = churn_sim.auc(p_model, z) or 0.0
    res.label_truth_auc = churn_sim.auc(p_true, z) or 0.0
    res.inactive = int(z.sum())
    res.truth_precision, res.truth_flagged = _precision(p_true, y, THRESHOLD)
    return res


def report(res: Result, say: Callable[[str], None] = print) -> bool:
    """Print the table; True when the issue's generated-data targets are met (AUC >= 0.80, precision >= 0.60)."""
    say(f"\ngenerated data with planted churn: {res.users:,} users, {res.alive:,} still there at the snapshot "
        f"{res.snapshot} and scored, {res.churned:,} of them left within 14 days "
        f"({res.churned / max(res.alive, 1):.1%})")
    say(f"{'':44} {'AUC':>7} {'precision @0.70':>16} {'flagged':>8}")
    prec = f"{res.precision:.3f}" if res.precision is not None else "-"
    tprec = f"{res.truth_precision:.3f}" if res.truth_precision is not None else "-"
    say(f"{'pgreco churn model (' + res.active + ', as of the snapshot)':44} {res.model_auc:7.4f} {prec:>16} "
        f"{res.flagged:8,}")
    say(f"{'the planted probability itself (the ceiling)':44} {res.truth_auc:7.4f} {tprec:>16} {res.truth_flagged:8,}")
    say(f"the same users against the product's own label (no event in the 14 days from the snapshot day: "
        f"{res.inactive:,} of them): model AUC {res.label_auc:.4f}, planted probability {res.label_truth_auc:.4f}")
    say("validation AUC on the newest matured snapshots: "
        + ", ".join(f"{k} {v:.4f}" for k, v in res.validation_auc.items()) + f"; Brier {res.model_brier:.4f}")
    say("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in res.seconds.items()))
    auc_ok = res.model_auc >= 0.80
    prec_ok = res.precision is not None and res.precision >= 0.60
    say(f"targets: AUC >= 0.80: {'met' if auc_ok else 'NOT met'}; precision >= 0.60 at 0.70: "
        f"{'met' if prec_ok else 'NOT met'}")
    return auc_ok and prec_ok
