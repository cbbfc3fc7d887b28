"""The pgreco job catalog and runner, and the Python steps it runs before a job's SQL body: the numpy
steps (EASE: ease.py, SVD factors: svd.py), the offline evaluation (evaluate.py) and the tune's search
(tune.py). Independent of the app/ package (tests/test_layout.py): the CLI, the API and the tools call in."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from psycopg.rows import tuple_row

#: job -> the serving tables it rewrites (a tenant's rows deleted and inserted): vacuumed after the job,
#: so requests do not wade through the dead rows and index entries until autovacuum comes (on
#: MovieLens-100K, after the 25 rewrites of a tune run, serving took 4.0 ms per call instead of 2.5)
REWRITES: dict[str, tuple[str, ...]] = {
    "feature_stats": ("reco.segments", "reco.feature_stats"),
    "cohort_priors": ("reco.cohort_priors",),
    "feature_neighbors": ("reco.feature_neighbors", "reco.feature_embeddings", "reco.neighbor_weights"),
    "embeddings": ("reco.feature_factors",),
    "bandit": ("reco.bandit_arms",),
}


def vacuum_rewritten(conn, job: str) -> None:
    """VACUUM the serving tables ``job`` rewrites (REWRITES), on an autocommit connection (outside any
    transaction); a role that does not own them is told so in a warning and they are left to autovacuum."""
    if job in REWRITES:
        conn.execute(f"VACUUM (SKIP_LOCKED) {', '.join(REWRITES[job])}")


def mark_fresh(conn, steps: list[str] | tuple[str, ...]) -> None:
    """Tell the SQL job bodies of this session which numpy steps were just computed (the session
    setting reco.python_steps, read by reco._python_step); pg_cron's sessions never set it."""
    conn.execute("SELECT set_config('reco.python_steps', %s, false)", (",".join(steps),))


def runner_url(conn) -> str:
    """The connection string of ``conn`` (password included), for a numpy step that opens its own connections."""
    import psycopg

    return psycopg.conninfo.make_conninfo(conn.info.dsn, password=conn.info.password)


def tenant_slugs(conn, tenant: str | None) -> list[str]:
    """``[tenant]``, or every tenant but the evaluation scopes when None (what reco.run_job loops over)."""
    if tenant:
        return [tenant]
    cur = conn.cursor(row_factory=tuple_row)
    return [r[0] for r in cur.execute("SELECT slug FROM reco.tenants WHERE evaluation_of IS NULL ORDER BY tenant_id")]


@dataclass
class RunLog:
    """What a job run logged by :func:`logged_run` reports when it ends."""

    rows: int = 0
    message: str = ""


@contextmanager
def logged_run(conn, job: str, tenant: str | None) -> Iterator[RunLog]:
    """Log a job run started outside reco.run_job (`reco tune`, `reco demo`) in reco.job_runs as run_job
    does: 'running' at once (``conn`` is autocommit), then 'succeeded' with the rows and message the caller
    sets on the yielded RunLog, or 'failed' with the error."""
    cur = conn.cursor(row_factory=tuple_row)
    run_id = cur.execute(
        """INSERT INTO reco.job_runs (job, tenant, status, backend_pid, backend_start)
           SELECT %s, (SELECT slug FROM reco.tenants WHERE tenant_id = reco.tenant_id(%s)), 'running',
                  pg_backend_pid(), a.backend_start
           FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()
           RETURNING run_id""", (job, tenant)).fetchone()[0]
    log = RunLog()
    try:
        yield log
    except BaseException as exc:
        cur.execute("""UPDATE reco.job_runs SET status = 'failed', message = %s, finished_at = clock_timestamp()
                       WHERE run_id = %s""", (f"{type(exc).__name__}: {exc}"[:2000], run_id))
        raise
    cur.execute("""UPDATE reco.job_runs SET status = 'succeeded', rows_written = %s, message = %s,
                          finished_at = clock_timestamp()
                   WHERE run_id = %s""", (log.rows, log.message, run_id))
