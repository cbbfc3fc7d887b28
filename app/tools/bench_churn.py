"""`reco bench churn`: the churn models on real customers (CDNOW) and their speed.

CDNOW_master.txt (23,570 customers of the CD retailer CDNOW, every purchase from 1997-01 to 1998-06: customer id,
date YYYYMMDD, quantity, amount) ships inside the `lifetimes` 0.11.3 wheel; it is fetched once with
`pip download --no-deps lifetimes==0.11.3` into the data directory's cache and read from the zip. The purchases
are imported through the public ingest (reco.ingest_events, tenant `cdnow`, kind 'purchase', the amount a numeric
prop). Calibration: the purchases up to 1997-09-30; holdout: the next 39 weeks; label: no purchase in the holdout.
The models are trained by rolling snapshots inside the calibration period only (jobs/churn.py, with ``until``
1997-10-01: no row at or after it is read), then every customer is scored as of 1997-10-01 (features from the
purchases before it) and compared with the holdout labels."""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from jobs.churn import auc, brier, calibration, load_lightgbm, train

MEMBER = "lifetimes/datasets/CDNOW_master.txt"
TENANT = "cdnow"
CUTOFF = date(1997, 10, 1)        # features before it; the holdout starts here
HOLDOUT_DAYS = 39 * 7
#: measured on the same customers and labels with lifetimes 0.11.3 and scikit-learn (issue 26)
REFERENCES = {"BG/NBD expected purchases": 0.7630, "Pareto/NBD expected purchases": 0.7687,
              "LR on RFM (5-fold CV on the holdout labels: optimistic)": 0.7689}
#: the definitions the bench trains with (settings of tenant cdnow): a purchase is the activity and the
#: payment; the label window of training (13 weeks) fits rolling snapshots into the 9-month calibration
SETTINGS = {"churn_activity_kinds": ["purchase"], "churn_payment_kind": "purchase", "churn_payment_prop": "amount",
            "churn_window_days": 91, "churn_observation_days": 90, "churn_snapshot_every_days": 7,
            "churn_train_snapshots": 12, "churn_validation_snapshots": 2, "churn_min_history_days": 0,
            "churn_lightgbm_min_rows": 2000}


def fetch(cache: Path) -> Path:
    """The lifetimes wheel in ``cache`` (downloaded once, without its dependencies)."""
    if not any(cache.glob("[lL]ifetimes-0.11.3-*.whl")):
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "lifetimes==0.11.3",
                        "-d", str(cache)], check=True)
    found = next(iter(sorted(cache.glob("[lL]ifetimes-0.11.3-*.whl"))), None)
    if found is None:
        raise FileNotFoundError(f"no lifetimes 0.11.3 wheel in {cache}")
    return found


def purchases(wheel: Path) -> list[tuple[str, date, int, float]]:
    """(customer, day, quantity, amount) of every purchase in CDNOW_master.txt."""
    out = []
    with zipfile.ZipFile(wheel) as z:
        for line in z.read(MEMBER).decode().splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[1].isdigit():
                d = parts[1]
                out.append((parts[0], date(int(d[:4]), int(d[4:6]), int(d[6:])), int(parts[2]), float(parts[3])))
    return out


def load(conn, rows: list[tuple[str, date, int, float]], progress: Callable[[int], None] | None = None) -> int:
    """Import the purchases into tenant cdnow through reco.ingest_events (idempotent on event_id)."""
    cur = conn.cursor(row_factory=tuple_row)
    cur.execute("SELECT reco.create_tenant(%s)", (TENANT,))
    for key, value in SETTINGS.items():
        cur.execute("SELECT reco.set_setting(%s, %s, %s)", (key, Jsonb(value), TENANT))
    cur.execute("SELECT reco.upsert_features(%s, %s)", (Jsonb([{"feature_id": "cd", "name": "CD"}]), TENANT))
    have = cur.execute("SELECT count(*) FROM reco.events WHERE tenant_id = reco.tenant_id(%s)",
                       (TENANT,)).fetchone()[0]
    if have >= len(rows):
        return 0
    accepted = 0
    for i in range(0, len(rows), 5000):
        batch = [{"event_id": f"cdnow-{i + j}", "user_id": c, "feature_id": "cd", "kind": "purchase",
                  "occurred_at": f"{d.isoformat()}T12:00:00Z", "props": {"amount": a, "quantity": q}}
                 for j, (c, d, q, a) in enumerate(rows[i:i + 5000])]
        report = cur.execute("SELECT reco.ingest_events(%s, %s)", (Jsonb(batch), TENANT)).fetchone()[0]
        accepted += report["accepted"]
        if report["rejected"]:
            raise RuntimeError(f"CDNOW rows rejected by the ingest: {report['rejected'][:3]}")
        if progress:
            progress(len(batch))
    return accepted


@dataclass
class Result:
    customers: int
    churn_rate: float
    models: dict[str, dict] = field(default_factory=dict)     # kind -> auc, brier, calibration, version
    baselines: dict[str, float] = field(default_factory=dict)
    active: str = ""
    train_message: str = ""
    scoring_rows: int = 0
    scoring_seconds: float = 0.0
    live_ms: tuple[float, float] = (0.0, 0.0)                  # median, p99
    floor_ms: tuple[float, float] = (0.0, 0.0)


def _ms(samples: list[float]) -> tuple[float, float]:
    a = np.array(samples) * 1000
    return float(np.median(a)), float(np.quantile(a, 0.99))


def run(url: str, cache: Path, log: Callable[[str], None] = print, live_samples: int = 300) -> Result:
    rows = purchases(fetch(cache))
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        t = time.perf_counter()
        n = load(conn, rows)
        if n:
            log(f"imported {n} purchases of {len({r[0] for r in rows})} customers in {time.perf_counter() - t:.1f} s")
        tid = conn.execute("SELECT reco.tenant_id(%s) AS t", (TENANT,)).fetchone()["t"]
        log("training on rolling snapshots before 1997-10-01 ...")
        tr = train(conn, TENANT, until=CUTOFF, note="reco bench churn (CDNOW calibration period)")
        # the holdout labels: no purchase in [1997-10-01, + 39 weeks)
        labels = {r["user_key"]: r["churned"] for r in conn.execute(
            """SELECT u.user_key, NOT EXISTS (
                   SELECT 1 FROM reco.events e WHERE e.tenant_id = u.tenant_id AND e.user_key = u.user_key
                     AND e.occurred_at >= %s::timestamptz AND e.occurred_at < %s::timestamptz) AS churned
               FROM reco.users u WHERE u.tenant_id = %s""",
            (f"{CUTOFF}T00:00:00Z", f"{CUTOFF + timedelta(days=HOLDOUT_DAYS)}T00:00:00Z", tid))}
        # every model scored as of the cutoff: the active one by the scoring path (timed), the other from Python
        t = time.perf_counter()
        from jobs.churn import score

        scored, _, _, _ = score(conn, TENANT, CUTOFF)
        secs = time.perf_counter() - t
        names = conn.execute("SELECT reco.churn_feature_names() AS n").fetchone()["n"]
        mat = conn.execute("SELECT user_key, x FROM reco.churn_matrix(%s, ARRAY[%s::date])",
                           (TENANT, CUTOFF)).fetchall()
        keys = [r["user_key"] for r in mat]
        x = np.array([r["x"] for r in mat], dtype=float)
        y = np.array([labels[k] for k in keys], dtype=bool)
        res = Result(len(keys), float(y.mean()), active=tr.active_kind, train_message=tr.message,
                     scoring_rows=scored, scoring_seconds=secs)
        for kind, version in tr.versions.items():
            m = conn.execute("SELECT model_id, model_blob, params FROM reco.models WHERE tenant_id = %s "
                             "AND version = %s", (tid, version)).fetchone()
            if kind == "lightgbm":
                p = load_lightgbm(m["model_blob"]).predict(x)
            else:
                p = np.array([r["probability"] for r in conn.execute(
                    "SELECT probability FROM reco.churn_model_scores(%s, %s) ORDER BY user_key",
                    (m["model_id"], CUTOFF))])
            res.models[kind] = {"version": version, "auc": auc(y, p), "brier": brier(y, p),
                                "calibration": calibration(y, p), "validation_auc": tr.metrics[kind]["auc"]}
        col = {f: x[:, j] for j, f in enumerate(names)}
        res.baselines = {"recency alone (days since the last purchase)": auc(y, col["recency_days"]),
                         "frequency alone (fewer purchase days = riskier)": auc(y, -col["active_days_total"]),
                         "P(alive)-like: one-time buyers 'alive' (p = 0), others by recency / mean gap":
                             auc(y, np.where(col["active_days_total"] <= 1, 0.0, col["overdue_ratio"]))}
        # the live single-user score vs the floor, on one connection
        users = [r["user_id"] for r in conn.execute(
            "SELECT user_id FROM reco.users WHERE tenant_id = %s ORDER BY user_key LIMIT %s", (tid, live_samples))]
        cur = conn.cursor(row_factory=tuple_row)
        live, floor = [], []
        for u in users:
            t = time.perf_counter()
            cur.execute("SELECT 1").fetchone()
            floor.append(time.perf_counter() - t)
            t = time.perf_counter()
            cur.execute("SELECT probability FROM reco.churn_score_live(%s, %s, %s)", (TENANT, u, CUTOFF)).fetchone()
            live.append(time.perf_counter() - t)
        res.live_ms, res.floor_ms = _ms(live), _ms(floor)
    return res


def report(res: Result, out: Callable[[str], None] = print) -> bool:
    """Print the tables; returns whether the best model reaches AUC 0.77."""
    out(f"CDNOW: {res.customers} customers scored as of {CUTOFF} (features from purchases before it); holdout "
        f"{HOLDOUT_DAYS // 7} weeks; churned (no purchase in the holdout): {res.churn_rate:.1%}")
    out(f"training: {res.train_message}")
    out("")
    out(f"{'model':<62} {'AUC':>7} {'Brier':>7}")
    for kind, m in res.models.items():
        label = f"pgreco {kind} v{m['version']}" + (" (active)" if kind == res.active else "")
        out(f"{label:<62} {m['auc']:>7.4f} {m['brier']:>7.4f}")
    for name, value in REFERENCES.items():
        out(f"{'reference: ' + name:<62} {value:>7.4f}")
    for name, value in res.baselines.items():
        out(f"{'naive: ' + name:<62} {value:>7.4f}")
    best = max(res.models.values(), key=lambda m: m["auc"])
    out("")
    out(f"calibration of the active model ({res.active}): deciles of the predicted probability")
    out(f"{'rows':>6} {'predicted':>10} {'observed':>10}")
    for row in res.models[res.active]["calibration"]:
        out(f"{row['rows']:>6} {row['predicted']:>10.3f} {row['observed']:>10.3f}")
    out("")
    rate = res.scoring_rows / res.scoring_seconds if res.scoring_seconds else 0.0
    out(f"features + scoring ({res.active}): {res.scoring_rows} users in {res.scoring_seconds:.2f} s "
        f"= {rate:,.0f} rows/s")
    ratio = res.live_ms[0] / res.floor_ms[0] if res.floor_ms[0] else float("nan")
    out(f"live single-user score (reco.churn_score_live): median {res.live_ms[0]:.2f} ms, p99 {res.live_ms[1]:.2f} ms; "
        f"floor (SELECT 1): median {res.floor_ms[0]:.3f} ms, p99 {res.floor_ms[1]:.3f} ms; ratio {ratio:.1f}x")
    ok = best["auc"] >= 0.77
    out(f"target AUC >= 0.77: {'met' if ok else 'NOT met'} (best {best['auc']:.4f})")
    return ok
