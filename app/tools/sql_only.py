"""`reco bench sql-only`: what running the jobs from SQL alone costs in ranking quality.

A DBA who schedules the jobs with pg_cron and never runs `reco jobs loop` gets what SQL computes: the
numpy steps (SVD feature factors above 64 features, EASE neighbours) are deferred (reco._defer) and the
tenant serves a fallback (reco.job_status). This measures, on MovieLens-100K in RecBole's split (loaded
by app.tools.quality into ``<db>_quality``), in one run and on the same data: NDCG@10 of the hybrid and of
UserCF (the component the SVD feeds) after ``CALL reco.run_job('all')`` from a plain session (as pg_cron
runs it), then after the Python runner's pass (jobs.runner, numpy steps included), each next to the
popularity floor of the same split. With ``--tune`` the SQL tune (``SELECT reco.tune()``, as the tune
job runs it from pg_cron) is applied first and both passes are measured again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from app.tools import quality, quality_data

Log = Callable[[str], None]
MODELS = ("hybrid", "usercf")


@dataclass
class Pass:
    label: str
    jobs_seconds: float
    statuses: dict[str, str]
    embeddings_seconds: float  # the job that computes the feature factors and user vectors
    ndcg: dict[str, float]
    hit: dict[str, float]


@dataclass
class SqlOnlyResult:
    sizes: dict[str, int]
    popularity_ndcg: float
    passes: list[Pass] = field(default_factory=list)
    tune_message: str = ""

    def as_json(self) -> dict:
        return asdict(self)


def _runs_since(url: str, last: int) -> dict[str, tuple[str, float]]:
    with quality._connect(url) as conn:
        return {r["job"]: (r["status"], r["s"]) for r in conn.execute(
            "SELECT job, status, extract(epoch FROM finished_at - started_at)::float8 AS s FROM reco.job_runs"
            " WHERE run_id > %s ORDER BY run_id", (last,))}


def _last_run(url: str) -> int:
    with quality._connect(url) as conn:
        return conn.execute("SELECT coalesce(max(run_id), 0) AS n FROM reco.job_runs").fetchone()["n"]


def _sql_jobs(url: str, tenant: str) -> tuple[float, dict[str, tuple[str, float]]]:
    """CALL reco.run_job('all') from a session that names no Python step: pg_cron's way. The SVD factors
    of an earlier Python pass are dropped first: a tenant that never had `reco jobs loop` has none."""
    last = _last_run(url)
    with quality._connect(url) as conn:
        conn.execute("DELETE FROM reco.feature_factors WHERE tenant_id = reco.tenant_id(%s)", (tenant,))
        t0 = time.perf_counter()
        conn.execute("CALL reco.run_job('all', %s)", (tenant,))
        seconds = time.perf_counter() - t0
    return seconds, _runs_since(url, last)


def _python_jobs(url: str, tenant: str, log: Log) -> tuple[float, dict[str, tuple[str, float]]]:
    """The Python runner (jobs.runner, numpy steps included), as `reco jobs run all`."""
    last = _last_run(url)
    seconds, _ = quality.run_jobs(url, tenant, log)
    return seconds, _runs_since(url, last)


def _measure(url: str, split: quality_data.Split, label: str, jobs: tuple[float, dict[str, tuple[str, float]]],
             log: Log) -> Pass:
    m = quality.measure(url, split, models=MODELS, log=log)
    seconds, runs = jobs
    return Pass(label, round(seconds, 1), {j: s for j, (s, _) in runs.items()},
                round(runs.get("embeddings", ("", 0.0))[1], 1),
                {k: round(v.ndcg, 4) for k, v in m.scores.items()}, {k: round(v.hit, 4) for k, v in m.scores.items()})


def run(base_url: str, *, reuse: bool = False, tune: bool = False, log: Log = quality._quiet) -> SqlOnlyResult:
    wheel, _ = quality_data.fetch_wheel(quality_data.cache_dir())
    data = quality_data.read_wheel(wheel)
    split = quality_data.build_split(data.interactions)
    popularity = quality_data.metrics(quality_data.popularity_rankings(split), split.test)
    url = quality.quality_database(base_url, reuse=reuse)
    quality.ensure_loaded(url, data, split, log)
    result = SqlOnlyResult(split.sizes(), round(popularity.ndcg, 4))
    rounds = [("defaults", None)] + ([("SQL tune", "tune")] if tune else [])
    for name, step in rounds:
        if step == "tune":
            with quality._connect(url) as conn:
                log("tune (SQL, as the tune job runs it from pg_cron)")
                summary = conn.execute("SELECT reco.tune(%s) AS s", (quality.TENANT,)).fetchone()["s"]
            result.tune_message = (f"applied {summary.get('settings')}" if summary.get("applied")
                                   else f"kept the settings ({summary.get('not_applied') or 'no gain above noise'})")
        log(f"{name}: jobs from SQL only")
        jobs = _sql_jobs(url, quality.TENANT)
        result.passes.append(_measure(url, split, f"{name}, SQL only (pg_cron)", jobs, log))
        log(f"{name}: jobs from the Python runner")
        jobs = _python_jobs(url, quality.TENANT, log)
        result.passes.append(_measure(url, split, f"{name}, Python runner", jobs, log))
    return result


def lines(r: SqlOnlyResult) -> list[str]:
    out = [f"MovieLens-100K, RecBole split {r.sizes}; popularity floor NDCG@10 {r.popularity_ndcg:.4f} (same run)"]
    if r.tune_message:
        out.append(f"SQL tune: {r.tune_message}")
    for p in r.passes:
        deferred = [j for j, s in p.statuses.items() if s == "deferred"]
        out.append(f"{p.label:38} hybrid NDCG@10 {p.ndcg['hybrid']:.4f} ({p.ndcg['hybrid'] / r.popularity_ndcg:.2f}× "
                   f"the floor), Hit@10 {p.hit['hybrid']:.4f}; UserCF alone {p.ndcg['usercf']:.4f}; "
                   f"jobs {p.jobs_seconds:.0f} s (embeddings {p.embeddings_seconds:.0f} s)"
                   + (f"; deferred: {', '.join(deferred)}" if deferred else ""))
    for sql, py in zip(r.passes[::2], r.passes[1::2], strict=True):
        gap = py.ndcg["hybrid"] - sql.ndcg["hybrid"]
        out.append(f"{sql.label.split(',')[0]}: SQL only costs {gap:+.4f} NDCG@10 "
                   f"({gap / py.ndcg['hybrid']:.1%} of the Python runner's)")
    return out
