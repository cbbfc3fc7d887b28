"""`reco jobs …`: the refresh jobs (reco.jobs): list, run, pg_cron, the foreground loop."""

from __future__ import annotations

from typing import Annotated

import typer

from app import db
from app.cli.common import (
    TenantOpt,
    console,
    err,
    print_table,
    prog,
    progress_bars,
)

jobs_app = typer.Typer(help="The refresh jobs (reco.jobs): list, run, pg_cron, foreground loop.",
                       no_args_is_help=True)


@jobs_app.command("list")
def jobs_list(tenant: TenantOpt = None) -> None:
    """The job catalog with default schedules and each job's last run, per tenant (--tenant: that
    tenant's only; without it and RECO_TENANT, every tenant)."""
    from rich import box
    from rich.table import Table

    with db.connect() as conn:
        # a run whose backend died (killed, crashed) would otherwise show 'running' forever
        conn.execute("SELECT reco.fail_orphaned_job_runs()")
        # an unknown tenant: the error and its hint
        rows = conn.execute("SELECT * FROM reco.job_overview(%s)", (tenant,)).fetchall()
    cells = [[r["job"], r["tenant"], r["schedule"],
              f"{r['started_at']:%Y-%m-%d %H:%M}" if r["started_at"] else "-", r["status"] or "-",
              f"{r['rows_written']:,}" if r["rows_written"] is not None else "-",
              f"{r['seconds']:.1f}" if r["seconds"] is not None else "-"] for r in rows]
    # compact (80 columns with the default tenant), and no cell ever cut ("featur…")
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
    for i, header in enumerate(("job", "tenant", "schedule", "last run", "status", "rows", "s")):
        table.add_column(header, no_wrap=True, justify="right" if header in ("rows", "s") else "left",
                         min_width=max([len(header), *(len(c[i]) for c in cells)]))
    for row in cells:
        table.add_row(*row)
    print_table(table)
    jobs: dict[str, dict] = {r["job"]: r for r in rows}
    in_all = [n + (f" (after {', '.join(j['depends_on'])})" if j["depends_on"] else "")
              for n, j in jobs.items() if j["in_all"]]
    console.print(f"'all' runs, in order: {', '.join(in_all)}; by name or on their schedule only: "
                  f"{', '.join(n for n, j in jobs.items() if not j['in_all'])}", markup=False, highlight=False)
    for r in rows:
        if r["waiting_since"] is not None:
            console.print(f"{r['tenant']}: serving a fallback since {r['waiting_since']:%Y-%m-%d %H:%M %Z} "
                          f"({r['job']} waits for Python): {r['waiting_for']}. `reco jobs loop` (or "
                          f"`reco jobs run {r['job']}`) computes it.", style="yellow", markup=False, highlight=False)


def _check_job(url: str, name: str, tenant: str | None) -> None:
    """An unknown job or tenant fails here, before any progress bar is drawn."""
    with db.connect(url) as conn:
        if tenant is not None:
            conn.execute("SELECT reco.tenant_id(%s)", (tenant,))  # raises with a hint
        names = [r["name"] for r in conn.execute("SELECT name FROM reco.jobs ORDER BY position")]
    if name != "all" and name not in names:
        err.print(f'error: unknown job "{name}"', markup=False, highlight=False)
        err.print(f"hint: the jobs are {', '.join(names)}; 'all' runs the refresh jobs in order "
                  f"(`{prog()} jobs list`)", markup=False, highlight=False)
        raise typer.Exit(1)


def run_jobs(name: str, tenant: str | None = None, url: str | None = None) -> list[dict]:
    """Run a job (or 'all') with a progress line per job; raises on a failed job."""
    from jobs.runner import run_job

    url = url or db.database_url()
    _check_job(url, name, tenant)
    with progress_bars() as bar:
        tasks: dict[str, int] = {}

        def start(job: str) -> None:
            tasks[job] = bar.add_task(job, total=None)

        def done(job: str, run: dict) -> None:
            bar.update(tasks[job], total=1, completed=1,
                       description=f"{job} {run['status']}")

        printed: dict[str, tuple[str, int]] = {}

        def progress(job: str, step: str) -> None:
            from rich.markup import escape

            bar.update(tasks[job], description=escape(step))
            if not err.is_terminal:  # no live bar in a pipe or a log: a line per step (per 25 %)
                what, _, pct = step.rpartition(" ")
                key = (what, int(pct[:-1]) // 25) if pct.endswith("%") and pct[:-1].isdigit() else (step, 0)
                if printed.get(job) != key:
                    printed[job] = key
                    err.print(f"  {step}", markup=False, highlight=False)

        runs = run_job(url, name, tenant, on_start=start, on_done=done, on_progress=progress)
    for r in runs:
        console.print(f"{r['job']:<18} {r['tenant']:<10} {r['status']:<10} "
                      f"{r['rows_written'] or 0:>10,} rows {r['seconds'] or 0:>7.1f} s"
                      + (f"  {r['message']}" if r["message"] else ""))
    return runs


@jobs_app.command("run")
def jobs_run(name: Annotated[str, typer.Argument(help="a job name, or 'all'")],
             tenant: TenantOpt = None) -> None:
    """Run a job now (CALL reco.run_job), for one tenant or all."""
    run_jobs(name, tenant)


@jobs_app.command("schedule")
def jobs_schedule(tenant: TenantOpt = None) -> None:
    """Register every job with pg_cron (SELECT reco.schedule_jobs(): "pgreco-<job>", each run for every
    tenant). With --tenant (or RECO_TENANT): that tenant's own cron jobs, "pgreco-<job>@<tenant>",
    for a tenant on other schedules than the rest (then do not schedule the every-tenant ones too)."""
    with db.connect() as conn:
        if tenant is None:
            rows = conn.execute("SELECT * FROM reco.schedule_jobs()").fetchall()
        else:
            rows = conn.execute("SELECT * FROM reco.schedule_tenant_jobs(%s)", (tenant,)).fetchall()
    for r in rows:
        console.print(f"{r['jobname']:<28} {r['schedule']:<14} cron job {r['jobid']}", markup=False,
                      highlight=False)


@jobs_app.command("unschedule")
def jobs_unschedule(tenant: TenantOpt = None) -> None:
    """Remove the pgreco jobs from pg_cron (SELECT reco.unschedule_jobs()); with --tenant (or
    RECO_TENANT), only that tenant's own ("pgreco-<job>@<tenant>")."""
    with db.connect() as conn:
        if tenant is None:
            n = conn.execute("SELECT reco.unschedule_jobs() AS n").fetchone()["n"]
        else:
            n = conn.execute("SELECT reco.unschedule_tenant_jobs(%s) AS n", (tenant,)).fetchone()["n"]
    console.print(f"removed {n} pg_cron jobs")


@jobs_app.command("loop")
def jobs_loop(tenant: TenantOpt = None,
              now: Annotated[bool, typer.Option("--now", help="run every job once at start")] = False) -> None:
    """Run the jobs on their schedules in the foreground (the embedded default has no pg_cron)."""
    from jobs.runner import loop

    if now:
        run_jobs("all", tenant)
    try:
        loop(db.database_url(), tenant=tenant, log=console.print)
    except KeyboardInterrupt:
        console.print("stopped")
