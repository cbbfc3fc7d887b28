"""`reco bench …`: benchmarks that print numbers (the tooling they drive is in app/tools)."""

from __future__ import annotations

from typing import Annotated

import typer

from app import db
from app.cli.common import (
    console,
    err,
    print_json,
)
from app.cli.data import demo_files, print_import, run_import
from app.cli.jobs import run_jobs

bench_app = typer.Typer(help="Benchmarks that print numbers (in a separate <db>_bench database).",
                        no_args_is_help=True)


@bench_app.command("ingest")
def bench_ingest(
    users: Annotated[int, typer.Option(help="demo users to generate (sets the event count)")] = 100_000,
    features: int = 50,
    days: int = 90,
    seed: int = 7,
    batch_events: Annotated[int, typer.Option(help="events sent through reco.ingest_events")] = 200_000,
) -> None:
    """CSV import rate (events/s, interactions included) and reco.ingest_events in 1,000-event batches."""
    from app.tools import bench

    url = bench.bench_database(db.database_url())
    out = demo_files(users, features, days, seed)
    for kind in ("features", "plans", "users"):
        run_import(kind, out / f"{kind}.csv", quiet=True, url=url)
    events = run_import("events", out / "events.csv", url=url)
    print_import(events)
    with db.connect(url) as conn:
        pairs = conn.execute("SELECT count(*) AS n FROM reco.interactions").fetchone()["n"]
    console.print(f"CSV import: {events.rows:,} events -> {pairs:,} interaction rows in "
                  f"{events.seconds:.1f} s = [bold]{events.rows_per_second:,.0f} events/s[/bold] "
                  f"(target >= 100,000)")

    sample = bench.read_events(out / "events.csv", batch_events, prefix="b:")
    stats = bench.ingest_batches(url, sample, 1000)
    console.print(
        f"reco.ingest_events: {stats.events:,} events in {len(stats.latencies_ms)} batches of 1,000, "
        f"{stats.seconds:.1f} s = [bold]{stats.rate:,.0f} events/s[/bold] (target >= 20,000); "
        f"batch median {bench.median(stats.latencies_ms):.1f} ms, p99 {stats.pct(0.99):.1f} ms")


@bench_app.command("sql")
def bench_sql(
    users: Annotated[int, typer.Option(help="demo users to generate")] = 100_000,
    features: int = 50,
    days: int = 90,
    seed: int = 7,
    calls: Annotated[int, typer.Option(help="recommend_features calls to time (random users)")] = 10_000,
    reuse: Annotated[bool, typer.Option(help="reuse the data already in the bench database")] = False,
    shape: Annotated[str, typer.Option(
        help="demo data shape: saas or long-tail (e.g. --shape long-tail --users 10000 --features 20000)")] = "saas",
) -> None:
    """run_job('all') time and recommend_features latency (p50/p99, measured inside the database)."""
    import resource
    import time as _time

    from app.tools import bench
    from app.tools.demodata import SHAPES

    if shape not in SHAPES:
        raise typer.BadParameter(f"--shape must be one of {', '.join(SHAPES)}")
    if shape == "long-tail" and features < 100:
        raise typer.BadParameter("--features must be at least 100 for the long-tail shape")

    base = db.database_url()
    if reuse:
        from app.migrate import migrate as run_migrate

        url = db.with_dbname(base, bench.bench_name(base))
        run_migrate(url)
    else:
        url = bench.bench_database(base)
        out = demo_files(users, features, days, seed, shape)
        for kind in ("features", "plans", "users", "events"):
            print_import(run_import(kind, out / f"{kind}.csv", url=url))
    t = _time.perf_counter()
    runs = run_jobs("all", url=url)
    jobs_s = _time.perf_counter() - t
    with db.connect(url) as conn:
        counts = conn.execute("""SELECT (SELECT count(*) FROM reco.users) AS users,
                                        (SELECT count(*) FROM reco.features) AS features,
                                        (SELECT count(*) FROM reco.events) AS events""").fetchone()
    timed = bench.time_recommend_floor(url, calls)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"data: {counts['users']:,} users, {counts['features']:,} features, {counts['events']:,} events")
    console.print(f"run_job('all'): [bold]{jobs_s:.1f} s[/bold] "
                  + ", ".join(f"{r['job']} {r['seconds']:.1f}s" for r in runs))
    console.print(f"recommend_features(u, 10), {len(timed.ms):,} random users, inside the database: "
                  f"{timed.line()}", markup=False, highlight=False)
    console.print(f"peak memory of this Python process: {peak_mib:,.0f} MiB")


@bench_app.command("experiment")
def bench_experiment(
    users: Annotated[int | None, typer.Option(help="users (default: what 80 % power needs for --effect)")] = None,
    effect: Annotated[float, typer.Option(help="the planted relative lift of the treatment's click rate")] = 0.2,
    base_rate: Annotated[float, typer.Option(help="the control's click probability per visit")] = 0.1,
    looks: Annotated[int, typer.Option(help="planned looks of the A/B test")] = 5,
    seed: int = 1,
    scale_users: Annotated[int, typer.Option(help="then time a report over this many users (0: skip)")] = 100_000,
    scale_exposures: Annotated[int, typer.Option(help="… and this many exposures")] = 1_000_000,
    peeking_runs: Annotated[int, typer.Option(help="A/A runs per row of the peeking table (0: skip)")] = 20_000,
) -> None:
    """The peeking table (reads × settings → false ship/stop rate, the report's rule beside the old one);
    an A/A and an A/B test through the real serving and ingest functions, then their reports; then
    the report's time over --scale-users users and --scale-exposures exposures."""
    import time as _time

    from app.cli.experiments import print_report
    from app.tools import bench
    from app.tools.experiment_sim import report_at_scale, setup, simulate
    from app.tools.peeking import peeking_lines

    base = db.database_url()
    url = bench.bench_database(base, "experiment")
    if peeking_runs:
        with db.connect(url) as conn:
            bounds = [r["z_boundary"] for r in conn.execute(
                "SELECT z_boundary FROM reco.stat_sequential_boundaries(5) ORDER BY look")]
        for line in peeking_lines(bounds, peeking_runs):
            console.print(line, markup=False, highlight=False)
    t = _time.perf_counter()
    with db.connect(url, autocommit=True) as conn:
        per_arm = conn.execute("SELECT reco.stat_sample_size(%s, %s, true, 0.05, 0.8) AS n",
                               (base_rate, effect)).fetchone()["n"]
    # two experiments (A/A, A/B) of two arms, each user in one of them
    n_users = users or int(4 * per_arm * 1.1)
    out = demo_files(n_users, 24, 60, seed)
    for kind in ("features", "plans", "users", "events"):
        run_import(kind, out / f"{kind}.csv", url=url)
    run_jobs("all", url=url)
    console.print(f"data: {n_users:,} users ({_time.perf_counter() - t:.0f} s to generate, load and run the jobs); "
                  f"80 % power for {base_rate:.0%} → {base_rate * (1 + effect):.1%} needs {per_arm:,} users per arm")
    setup(url, effect=effect, base_rate=base_rate, looks=looks)
    r = simulate(url, n_users, effect=effect, base_rate=base_rate, seed=seed)
    console.print(f"simulated {r.visits:,} visits ({r.serve_ms:.2f} ms per reco.api_serve call), {r.clicks:,} clicks "
                  f"ingested in {r.ingest_s:.1f} s; the A/B report took {r.report_s:.2f} s")
    with db.connect(url) as conn:
        for name in ("aa", "ab"):
            rows = conn.execute("SELECT * FROM reco.experiment_report(%s)", (name,)).fetchall()
            print_report(rows, name)
    # what being in an experiment costs a request: the A/A's scenario (every user in it) against a
    # scenario with the same overrides and no experiment, the same users, timed inside the database
    with db.connect(url, autocommit=True) as conn:
        conn.execute("SELECT reco.upsert_scenario('email_plain', '{\"weight_popularity\": 0.3}')")
    inside = bench.time_recommend_floor(url, 4000, options={"scenario": "email"})
    outside = bench.time_recommend_floor(url, 4000, options={"scenario": "email_plain"})
    p50_in, p99_in = bench.percentile(inside.ms, 0.5), bench.percentile(inside.ms, 0.99)
    p50_out, p99_out = bench.percentile(outside.ms, 0.5), bench.percentile(outside.ms, 0.99)
    console.print(f"recommend_features in a running experiment: {inside.line()}", markup=False, highlight=False)
    console.print(f"… the same overrides, no experiment: {outside.line()}", markup=False, highlight=False)
    console.print(f"in / out of the experiment: p50 {p50_in / p50_out:.3f}x, p99 {p99_in / p99_out:.3f}x")
    if scale_users:
        write_s, report_s = report_at_scale(url, scale_users, scale_exposures)
        with db.connect(url) as conn:
            rounds = []
            for _ in range(20):  # the floor: the same connection doing no work
                t = _time.perf_counter()
                conn.execute("SELECT 1").fetchone()
                rounds.append((_time.perf_counter() - t) * 1000)
        floor_ms = bench.percentile(rounds, 0.5)
        console.print(f"report over {scale_users:,} users and {scale_exposures:,} exposures (written by SQL in "
                      f"{write_s:.0f} s): [bold]{report_s:.2f} s[/bold]; floor (SELECT 1 on the same connection) "
                      f"{floor_ms:.3f} ms, ratio {report_s * 1000 / max(floor_ms, 1e-9):,.0f}x")
    console.print(f"(data in {db.with_dbname(base, bench.bench_name(base, 'experiment'))}: "
                  "reco experiment report ab, with RECO_DATABASE_URL set to it)")


@bench_app.command("soak")
def bench_soak(
    minutes: Annotated[float, typer.Option(min=0.5, help="length of the load, minutes")] = 10.0,
    read_rate: Annotated[float, typer.Option(help="GET …/recommendations a second, in all (4 connections)")] = 200.0,
    write_rate: Annotated[float, typer.Option(help="POST /v1/events batches a second, in all (2 connections)")] = 10.0,
    batch: Annotated[int, typer.Option(min=1, help="events per batch, each with a unique event id")] = 100,
    down: Annotated[float, typer.Option(help="seconds the database stays stopped (stop/start, crash)")] = 5.0,
    users: Annotated[int, typer.Option(min=10, help="demo users in the soak's database")] = 2000,
    port: Annotated[int, typer.Option(help="the API's port (0: a free one)")] = 0,
    keep: Annotated[bool, typer.Option(help="keep the temporary data directory and the API's log")] = False,
) -> None:
    """Mixed load (reads, ingest) on `reco serve` for N minutes, on an embedded server of its own in a
    temporary directory, with the database stopped and started, restarted, and crashed (pg_ctl -m
    immediate) in the middle; prints accepted vs stored events, 503s for stored events, 5xx, and the time
    to recover after each restart. Exit status 1 when a target is missed."""
    from app.tools.soak import soak_command

    soak_command(minutes, users=users, read_rate=read_rate, write_rate=write_rate, batch=batch, down=down,
                 port=port, keep=keep, out=lambda line: console.print(line, markup=False, highlight=False))


@bench_app.command("quality")
def bench_quality(
    data: Annotated[str, typer.Option(help="movielens (MovieLens-100K in RecBole's split), generated "
                                           "(the demo generator, offline evaluation) or all")] = "movielens",
    tune: Annotated[bool, typer.Option("--tune/--no-tune", help="then tune (jobs.tune), re-run the jobs "
                                                                 "and measure again")] = True,
    reuse: Annotated[bool, typer.Option(help="keep the data already loaded in <db>_quality")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Ranking quality on MovieLens-100K (RecBole 1.2.1's split) next to RecBole's baselines."""
    from app.tools import quality, quality_generated, quality_report

    if data not in ("movielens", "generated", "all"):
        raise typer.BadParameter("--data must be movielens, generated or all")
    base = db.database_url()
    log = (lambda line: None) if as_json else (lambda line: err.print(f"  {line}", markup=False, highlight=False))
    out: dict = {}
    if data in ("movielens", "all"):
        result = quality.run_movielens(base, reuse=reuse, tune=tune, log=log)
        out["movielens"] = result.as_json()
        if not as_json:
            for line in quality_report.movielens_lines(result):
                console.print(line, markup=False, highlight=False)
    if data in ("generated", "all"):
        gen = quality_generated.run_generated(base, reuse=reuse, fresh_database=data == "generated", log=log)
        out["generated"] = gen.as_json()
        if not as_json:
            console.print("")
            for line in quality_report.generated_lines(gen):
                console.print(line, markup=False, highlight=False)
    if as_json:
        print_json(out)


@bench_app.command("sql-only")
def bench_sql_only(
    tune: Annotated[bool, typer.Option("--tune/--no-tune", help="then the SQL tune, and both passes again")] = False,
    reuse: Annotated[bool, typer.Option(help="keep the data already loaded in <db>_quality")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """What running the jobs from SQL alone (pg_cron, no `reco jobs loop`) costs on MovieLens-100K."""
    from app.tools import sql_only

    log = (lambda line: None) if as_json else (lambda line: err.print(f"  {line}", markup=False, highlight=False))
    result = sql_only.run(db.database_url(), reuse=reuse, tune=tune, log=log)
    if as_json:
        print_json(result.as_json())
        return
    for line in sql_only.lines(result):
        console.print(line, markup=False, highlight=False)


@bench_app.command("ease")
def bench_ease(
    sizes: Annotated[str, typer.Option(help="catalog sizes (features), comma-separated")] = "1000,2000,4000,6000,8000",
    users: Annotated[int, typer.Option(help="synthetic users")] = 10_000,
    per_user: Annotated[int, typer.Option(help="median features per user (log-normal, Zipf-like popularity)")] = 135,
    k: Annotated[int, typer.Option(help="neighbours kept per target (neighbors_k)")] = 20,
    lam: Annotated[float, typer.Option("--lambda", help="EASE λ (ease_lambda)")] = 250.0,
    check: Annotated[bool, typer.Option(help="also compare the weights with a float64 computation")] = False,
) -> None:
    """Seconds and peak memory of the EASE numpy step (jobs/ease.py) per catalog size, a fresh process each."""
    from rich.table import Table

    from app.tools.bench_models import measure
    from jobs.ease import peak_bytes

    ns = [int(x) for x in sizes.split(",") if x.strip()]
    table = Table("features", "interactions", "RᵀR s", "weights s", "top-K s", "total s", "peak RSS MiB",
                  "of which data MiB", "estimate MiB", *(["max |err|", "top-K agree"] if check else []))
    for r in measure(ns, users, per_user, k, lam, check=check):
        if "error" in r:
            table.add_row(f"{r['features']:,}", f"failed: {r['error']}", *["-"] * (len(table.columns) - 2))
            continue
        table.add_row(f"{r['features']:,}", f"{r['interactions']:,}", f"{r['gram_s']:.1f}",
                      f"{r['weights_s']:.1f}", f"{r['top_k_s']:.1f}", f"{r['weights_s'] + r['top_k_s']:.1f}",
                      f"{r['peak_mib']:,.0f}", f"{r['base_mib']:,.0f}",
                      f"{peak_bytes(r['features']) / 2**20 + r['base_mib']:,.0f}",
                      *([f"{r['max_abs_err']:.1e} of {r['max_weight']:.2f}", f"{r['top_k_agree']:.4f}"]
                        if check else []))
    console.print(table)
    console.print("weights s includes RᵀR (measured alone in its column); total = weights + top-K. "
                  "Timings on a shared machine drift.")




# the load benchmarks on a running API server (bench api, bench fairness) are in bench_load.py; importing
# it registers them on bench_app, after the commands above (their order in `reco bench --help`)
from app.cli import bench_load  # noqa: E402, F401
