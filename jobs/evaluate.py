"""Offline evaluation from Python (`reco evaluate`): the same SQL steps as ``reco.evaluate``
(sql/060_evaluation.sql), with the ranking spread over several connections, SVD factors for
catalogs above 64 features (as `reco jobs run embeddings`), and a small grid search.

The evaluation scope (a tenant holding a leave-one-out copy of the data) is committed so that
the ranking connections see it, and dropped at the end whatever happens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from jobs import mark_fresh, runner_url, tenant_slugs
from jobs.components import TUNED
from jobs.ease import write_ease_weights
from jobs.svd import DIM, write_svd_factors

#: users ranked per SQL call: small enough for a smooth progress bar and an even split
CHUNK = 500

Progress = Callable[[str, int, int], None]  # (step, done, total)


@dataclass
class Scope:
    """An evaluation scope: the tenant id and slug, and the held-out users' key ranges."""

    tenant_id: int
    slug: str
    users: int
    chunks: list[tuple[int, int]] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # reco.evaluation_models(), in report order
    python_steps: list[str] = field(default_factory=list)  # the numpy steps computed for it ('svd', 'ease')


@dataclass
class Result:
    run_id: int
    k: int
    users: int
    seconds: float
    scores: dict[str, dict[str, float]]

    def as_json(self) -> dict:
        return {"k": self.k, "users": self.users, "run_id": self.run_id, "seconds": round(self.seconds, 1),
                "results": {m: {key: round(v, 4) for key, v in s.items()} for m, s in self.scores.items()}}


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


@contextmanager
def scope(url: str, tenant: str | None, users: int | None, settings: dict | None = None,
          seed: str = "pgreco", progress: Progress | None = None, fold: int = 0) -> Iterator[Scope]:
    """Create an evaluation scope of ``tenant`` (held-out users: ``users``, 0 = all, None = the
    setting evaluation_users; fold 1: each user's adoption before the latest, the latest left out),
    yield it, drop it."""
    with _connect(url) as conn:
        if progress:
            conn.add_notice_handler(lambda d: (d.message_primary or "").startswith("progress: ")
                                    and progress(d.message_primary.split(": ", 2)[-1], 0, 0))
        src = conn.execute("SELECT reco.tenant_id(%s) AS id", (tenant,)).fetchone()["id"]
        big = conn.execute("SELECT count(*) > %s AS big FROM reco.features WHERE tenant_id = %s::int AND active",
                           (DIM, src)).fetchone()["big"]
        eval_id = conn.execute("SELECT reco.evaluation_scope(%s::int, %s::int, %s, %s, %s, %s) AS id",
                               (src, users, seed, Jsonb(settings or {}), not big, fold)).fetchone()["id"]
        slug = conn.execute("SELECT slug FROM reco.tenants WHERE tenant_id = %s", (eval_id,)).fetchone()["slug"]
        try:
            steps = []
            if big:  # SVD factors of the scope's own R, then its user vectors (told the factors are fresh)
                write_svd_factors(conn, slug)
                steps.append("svd")
                mark_fresh(conn, steps)
                conn.execute("SELECT reco.job_embeddings(%s::int)", (eval_id,))
            if write_ease_weights(conn, slug):  # the scope's model is EASE: its weights from numpy
                steps.append("ease")
                mark_fresh(conn, ["svd", "ease"])
                conn.execute("SELECT reco.job_feature_neighbors(%s::int)", (eval_id,))
            keys = [r["user_key"] for r in conn.execute(
                "SELECT user_key FROM reco.evaluation_holdouts WHERE tenant_id = %s ORDER BY user_key", (eval_id,))]
            chunks = [(part[0], part[-1]) for part in (keys[i:i + CHUNK] for i in range(0, len(keys), CHUNK))]
            models = conn.execute("SELECT reco.evaluation_models() AS m").fetchone()["m"]
            yield Scope(eval_id, slug, len(keys), chunks, models, steps)
        finally:
            conn.execute("SELECT reco.drop_tenant(%s)", (slug,))


def rank(url: str, sc: Scope, model: str, k: int, *, options: dict | None = None, workers: int = 2,
         progress: Progress | None = None) -> None:
    """Rank the top ``k`` of every held-out user of the scope with one model, on ``workers`` connections."""
    done = 0

    def work(part: list[tuple[int, int]]) -> None:
        nonlocal done
        with _connect(url) as conn:
            for lo, hi in part:
                conn.execute("SELECT reco.evaluation_rank(%s, %s, %s, %s, %s, %s)",
                             (sc.tenant_id, model, k, lo, hi, Jsonb(options or {})))
                done += 1
                if progress:
                    progress(model, done, len(sc.chunks))

    parts = [sc.chunks[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(work, p) for p in parts if p]:
            f.result()


def scores(url: str, sc: Scope) -> dict[str, dict[str, float]]:
    with _connect(url) as conn:
        return {r.pop("model"): r for r in conn.execute(
            "SELECT model, hit_rate, mrr, ndcg, coverage FROM reco.evaluation_scores(%s)", (sc.tenant_id,))}


def record(url: str, sc: Scope, kind: str, k: int, options: dict, started: datetime) -> int:
    """Store the scope's scores as a run; its provenance names the numpy steps computed for the scope."""
    with _connect(url) as conn:
        return conn.execute("SELECT reco.evaluation_record(%s, %s, %s, %s, %s) AS id",
                            (sc.tenant_id, kind, k, Jsonb({**options, "python_steps": sc.python_steps}),
                             started)).fetchone()["id"]


def evaluate(url: str, tenant: str | None = None, *, k: int = 10, users: int | None = None,
             settings: dict | None = None, workers: int = 2, progress: Progress | None = None) -> Result:
    """Leave-one-out evaluation of every model; stored as a run of ``tenant``. ``settings``
    override the tenant's settings inside the evaluation only."""
    if not 1 <= k <= 100:
        raise ValueError("k must be between 1 and 100")
    started, t0 = datetime.now(UTC), time.perf_counter()
    with scope(url, tenant, users, settings, progress=progress) as sc:
        for model in sc.models:
            rank(url, sc, model, k, workers=workers, progress=progress)
        run_id = record(url, sc, "evaluate", k, {"workers": workers, "settings": settings or {}}, started)
        result = scores(url, sc)
    return Result(run_id, k, sc.users, time.perf_counter() - t0, result)


def evaluate_for_runner(conn: psycopg.Connection, tenant: str | None) -> int:
    """The evaluate job's numpy step (jobs.runner.PYTHON_STEPS): :func:`evaluate` (K 10, setting
    evaluation_users) for the tenant or every tenant, so EASE and SVD are computed as served; what it
    stored is left in the session (reco.evaluate_done) for the SQL job body to log."""
    url = runner_url(conn)
    done = {}
    for slug in tenant_slugs(conn, tenant):
        result = evaluate(url, slug)
        hybrid = result.scores.get("hybrid", {}).get("ndcg")
        done[slug] = {"users": result.users, "message": f"run {result.run_id} (Python, numpy steps included)"
                      + (f": hybrid NDCG@10 {hybrid:.4f}" if hybrid is not None else ": no eligible users")}
    conn.execute("SELECT set_config('reco.evaluate_done', %s, false)", (json.dumps(done),))
    return len(done)


# --------------------------------------------------------------------------------------------
# grid search
# --------------------------------------------------------------------------------------------

#: (itemcf, usercf, prior, popularity) weight sets tried by the grid (the hybrid is evaluated
#: without exploration, so weight_explore is not part of it)
WEIGHTS = [(0.85, 0.1, 0.01, 0.04), (0.95, 0.05, 0.0, 0.0), (0.8, 0.2, 0.0, 0.0), (0.7, 0.2, 0.02, 0.08),
           (0.6, 0.3, 0.05, 0.05), (0.5, 0.3, 0.1, 0.1), (0.5, 0.5, 0.0, 0.0), (0.4, 0.4, 0.1, 0.1)]
TAUS = (7, 14, 30)          # decay_tau_days (each needs its own scope: the interactions change)
LAMBDAS = (0.7, 0.8, 0.9, 1.0)   # mmr_lambda


@dataclass
class GridPoint:
    settings: dict
    hit_rate: float
    mrr: float
    ndcg: float
    run_id: int


def grid(url: str, tenant: str | None = None, *, k: int = 10, users: int | None = 5000, workers: int = 2,
         progress: Progress | None = None) -> list[GridPoint]:
    """Evaluate the hybrid over a small grid: τ (a scope each), then for each τ every weight set
    at the tenant's λ, then λ for the best of those. Returns the points, best NDCG first; each
    is stored as a run of kind 'grid'. No point when the tenant has no eligible user."""
    points: list[GridPoint] = []
    for tau in TAUS:
        started = datetime.now(UTC)
        with scope(url, tenant, users, {"decay_tau_days": tau}, progress=progress) as sc:
            if not sc.users:  # no eligible user: nothing to rank, whatever τ
                break
            with _connect(url) as conn:
                base_lambda = float(conn.execute("SELECT reco.setting('mmr_lambda', %s::int) #>> '{}' AS v",
                                                 (sc.tenant_id,)).fetchone()["v"])

            def run(weights: tuple, lam: float, tau: float = tau, started: datetime = started) -> GridPoint:
                # the point's settings are set in the scope, so the run records what was used
                settings = {"decay_tau_days": tau, "mmr_lambda": lam,
                            **{f"weight_{n}": w for n, w in zip(TUNED,
                                                                weights, strict=True)}}
                with _connect(url) as conn:
                    for key, value in settings.items():
                        conn.execute("SELECT reco.set_setting(%s, %s, %s)", (key, Jsonb(value), sc.slug))
                rank(url, sc, "hybrid", k, workers=workers, progress=progress)
                s = scores(url, sc)["hybrid"]
                run_id = record(url, sc, "grid", k, {}, started)
                point = GridPoint(settings, s["hit_rate"], s["mrr"], s["ndcg"], run_id)
                points.append(point)
                return point

            best = max((run(w, base_lambda) for w in WEIGHTS), key=lambda p: p.ndcg)
            weights = tuple(best.settings[f"weight_{n}"] for n in TUNED)
            for lam in LAMBDAS:
                if lam != base_lambda:
                    run(weights, lam)
    return sorted(points, key=lambda p: p.ndcg, reverse=True)


def apply(url: str, tenant: str | None, settings: dict) -> list[str]:
    """Write a grid point's settings to the tenant; a changed τ also rebuilds its interactions."""
    done = []
    with _connect(url) as conn:
        tid = conn.execute("SELECT reco.tenant_id(%s) AS id", (tenant,)).fetchone()["id"]
        old_tau = conn.execute("SELECT reco.setting('decay_tau_days', %s::int) #>> '{}' AS v",
                               (tid,)).fetchone()["v"]
        for key, value in settings.items():
            conn.execute("SELECT reco.set_setting(%s, %s, %s)", (key, Jsonb(value), tenant))
            done.append(f"{key} = {value}")
        if float(old_tau) != float(settings.get("decay_tau_days", old_tau)):
            n = conn.execute("SELECT reco.rebuild_interactions(%s) AS n", (tenant,)).fetchone()["n"]
            done.append(f"interactions rebuilt with the new τ ({n:,} rows): run the jobs to refresh the tables")
    return done
