"""The job catalog (reco.jobs) seen from Python: list, run, schedule with pg_cron, and the
foreground loop that keeps the tables fresh where pg_cron is absent (the embedded default)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import psycopg
from psycopg.rows import dict_row

from jobs import mark_fresh, vacuum_rewritten
from jobs.churn import score_for_runner, train_for_runner
from jobs.cron import next_run
from jobs.ease import write_ease_weights
from jobs.evaluate import evaluate_for_runner
from jobs.svd import write_svd_factors
from jobs.tune import tune_for_runner

#: job -> (the step its SQL body checks with reco._python_step, the numpy function computing it)
PYTHON_STEPS: dict[str, tuple[str, Callable[[psycopg.Connection, str | None], int]]] = {
    "feature_neighbors": ("ease", write_ease_weights),
    "embeddings": ("svd", write_svd_factors),
    "tune": ("tune", tune_for_runner),
    "evaluate": ("evaluate", evaluate_for_runner),
    "churn_train": ("churn_train", train_for_runner),
    "churn_score": ("churn_score", score_for_runner),
}


class JobFailed(RuntimeError):
    """A job's numpy step failed (logged in reco.job_runs as a failed run)."""


@dataclass
class Job:
    name: str
    schedule: str
    depends_on: list[str]
    description: str
    in_all: bool = True
    last_status: str | None = None
    last_started: datetime | None = None
    last_seconds: float | None = None
    last_rows: int | None = None


def list_jobs(conn: psycopg.Connection) -> list[Job]:
    # a run whose backend died (killed, crashed) would otherwise show 'running' forever
    conn.execute("SELECT reco.fail_orphaned_job_runs()")
    rows = conn.execute(
        """SELECT j.name, j.schedule, j.depends_on, j.description, j.in_all, r.status, r.started_at,
                  extract(epoch FROM r.finished_at - r.started_at)::float8 AS seconds, r.rows_written
           FROM reco.jobs j
           LEFT JOIN LATERAL (SELECT * FROM reco.job_runs r WHERE r.job = j.name
                              ORDER BY r.run_id DESC LIMIT 1) r ON true
           ORDER BY j.position""").fetchall()
    return [Job(r["name"], r["schedule"], r["depends_on"], r["description"], r["in_all"], r["status"],
                r["started_at"], r["seconds"], r["rows_written"]) for r in rows]


def job_names(conn: psycopg.Connection) -> list[str]:
    """The jobs 'all' runs, in order (the refresh jobs; not the evaluation)."""
    return [j.name for j in list_jobs(conn) if j.in_all]


class _IndexProgress(threading.Thread):
    """Polls pg_stat_progress_create_index on its own connection while a job runs, so a long
    index build (the HNSW index of the user vectors) reports how far it is."""

    def __init__(self, url: str, pid: int, report: Callable[[str], None]) -> None:
        super().__init__(daemon=True)
        self.url, self.pid, self.report = url, pid, report
        self.done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.done.wait(0.5):
                row = conn.execute(
                    """SELECT phase, blocks_done, blocks_total FROM pg_stat_progress_create_index
                       WHERE pid = %s""", (self.pid,)).fetchone()
                if row and row[2]:
                    self.report(f"{row[0]} {100 * row[1] // row[2]}%")


def run_job(url: str, name: str, tenant: str | None = None,
            on_start: Callable[[str], None] | None = None,
            on_done: Callable[[str, dict], None] | None = None,
            on_progress: Callable[[str, str], None] | None = None) -> list[dict]:
    """CALL reco.run_job for one job or, for 'all', each job in order (so progress can be shown).

    The steps that need numpy run here first (``PYTHON_STEPS``): the SVD factors of the embeddings
    job for catalogs larger than the vector dimension, the EASE weights of feature_neighbors.
    ``on_progress(job, step)`` receives the steps the jobs announce (NOTICE 'progress: <job>
    [<tenant>]: <step>', passed on without its prefix) and how far an index build is.
    """
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        current = {"job": name}
        if on_progress:
            def notice(diag: psycopg.errors.Diagnostic) -> None:
                msg = diag.message_primary or ""
                if msg.startswith("progress: "):
                    on_progress(current["job"], msg[len("progress: "):])
            conn.add_notice_handler(notice)
        names = job_names(conn) if name == "all" else [name]
        results = []
        for job in names:
            current["job"] = job
            if on_start:
                on_start(job)
            before = conn.execute("SELECT coalesce(max(run_id), 0) AS id FROM reco.job_runs").fetchone()["id"]
            # the numpy steps (SVD factors, EASE weights) first; reco.python_steps tells the SQL job
            # bodies they are fresh (pg_cron never sets it: the jobs then defer, see reco._defer)
            if job in PYTHON_STEPS:
                step, compute = PYTHON_STEPS[job]
                try:
                    compute(conn, tenant)
                except (ValueError, MemoryError, np.linalg.LinAlgError) as exc:
                    # logged as a failed run of the job, like a failure inside the database
                    conn.execute("""INSERT INTO reco.job_runs (job, tenant, status, message, finished_at)
                                    VALUES (%s, %s, 'failed', %s, clock_timestamp())""",
                                 (job, tenant or "all", f"{step} (numpy): {exc}"))
                    raise JobFailed(f"{job}: {step} (numpy): {exc}") from exc
                mark_fresh(conn, [step])
            poller = None
            if on_progress:
                poller = _IndexProgress(url, conn.info.backend_pid,
                                        lambda step, j=job: on_progress(j, f"{j}: {step}"))
                poller.start()
            try:
                conn.execute("CALL reco.run_job(%s, %s)", (job, tenant))
            finally:
                if poller:
                    poller.done.set()
                    poller.join()
            vacuum_rewritten(conn, job)
            runs = conn.execute(
                """SELECT job, tenant, status, rows_written, message,
                          extract(epoch FROM finished_at - started_at)::float8 AS seconds
                   FROM reco.job_runs WHERE run_id > %s AND job = %s ORDER BY run_id""",
                (before, job)).fetchall()
            for run in runs:
                results.append(run)
                if on_done:
                    on_done(job, run)
        return results


#: seconds before the loop tries a queued job again whose run failed (it stays queued until it succeeds)
RETRY_QUEUED = 600.0


def loop(url: str, *, tenant: str | None = None, once_due: bool = False,
         log: Callable[[str], None] = print, stop_after: float | None = None) -> None:
    """Run each job when its cron schedule is due, in the foreground, until interrupted."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        jobs = list_jobs(conn)
    now = datetime.now().astimezone()
    due = {j.name: next_run(j.schedule, now - timedelta(minutes=1)) if once_due else next_run(j.schedule, now)
           for j in jobs}
    started = time.monotonic()
    tried: dict[tuple[str, str], float] = {}  # queued job -> when the loop last tried it
    log("running jobs on their schedules: " + ", ".join(f"{j.name} ({j.schedule})" for j in jobs))
    def run_logged(name: str, slug: str | None, now: datetime) -> None:
        try:
            runs = run_job(url, name, slug)
        except (psycopg.Error, JobFailed) as exc:  # logged in reco.job_runs too; the loop goes on
            msg = exc.diag.message_primary if isinstance(exc, psycopg.Error) else str(exc)
            log(f"{now:%H:%M:%S} {name} [{slug or 'all'}]: failed: {msg}")
            return
        for run in runs:
            log(f"{now:%H:%M:%S} {name} [{run['tenant']}]: {run['status']}, "
                f"{run['rows_written'] or 0} rows, {run['seconds'] or 0:.1f} s"
                + (f" - {run['message']}" if run["message"] else ""))

    while stop_after is None or time.monotonic() - started < stop_after:
        now = datetime.now().astimezone()
        for j in jobs:
            if due[j.name] <= now:
                run_logged(j.name, tenant, now)
                due[j.name] = next_run(j.schedule, now)
        # work that pg_cron's runs left for Python (reco._defer): the job again, numpy steps included
        for q in queued(url, tenant):
            key = (q["job"], q["tenant"])
            if time.monotonic() - tried.get(key, -RETRY_QUEUED) >= RETRY_QUEUED:
                tried[key] = time.monotonic()
                run_logged(q["job"], q["tenant"], now)
        time.sleep(1.0)


def queued(url: str, tenant: str | None = None) -> list[dict]:
    """The jobs waiting in reco.job_queue (left by runs that needed Python), oldest first."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(
            """SELECT q.job, t.slug AS tenant, q.reason, q.requested_at FROM reco.job_queue q
               JOIN reco.tenants t USING (tenant_id)
               WHERE %s::text IS NULL OR t.slug = %s ORDER BY q.requested_at""", (tenant, tenant)).fetchall()
