"""`reco bench api` and `reco bench fairness`: load on a running API server (a subprocess)."""

from __future__ import annotations

from typing import Annotated

import typer

from app import db
from app.cli.bench import bench_app
from app.cli.common import (
    console,
)
from app.cli.data import demo_files, run_import
from app.cli.jobs import run_jobs
from app.cli.serve import default_workers
from app.settings import get_settings

PATHS = {"recommendations": "GET /v1/users/{id}/recommendations?k=10", "floor": "GET /v1/ping (floor)"}


@bench_app.command("api")
def bench_api(
    users: Annotated[int, typer.Option(help="demo users (24 features, 90 days: the demo grown)")] = 100_000,
    seed: int = 7,
    seconds: Annotated[float, typer.Option(help="length of each measurement")] = 10.0,
    rounds: Annotated[int, typer.Option(min=1, help="measurements of each endpoint, alternating; the median "
                                                    "is reported (the machine's speed drifts)")] = 3,
    connections: Annotated[int, typer.Option(help="concurrent client connections")] = 8,
    workers: Annotated[int, typer.Option(min=0, help="API worker processes (default 0: as reco serve)")] = 0,
    port: int = 8765,
    batches: Annotated[int, typer.Option(help="1,000-event batches to POST")] = 100,
    reuse: Annotated[bool, typer.Option(help="reuse the data already in the bench database")] = False,
) -> None:
    """Load on a running API server (a subprocess) from this process: recommendations, the floor
    (/v1/ping: the same pool and key check, no work), and event ingest in 1,000-event batches."""
    import statistics

    import psycopg

    from app.tools import bench, loadgen

    workers = workers or default_workers()
    base = db.database_url()
    out = demo_files(users, 24, 90, seed)
    if reuse:
        from app.migrate import migrate as run_migrate

        url = db.with_dbname(base, bench.bench_name(base))
        run_migrate(url)
    else:
        url = bench.bench_database(base)
        for kind in ("features", "plans", "users", "events"):
            run_import(kind, out / f"{kind}.csv", url=url, quiet=True)
        run_jobs("all", url=url)
    # the steady state: a freshly loaded database (or one a previous run wrote to) would
    # otherwise be vacuumed during the measurement
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    with db.connect(url) as conn:
        n_users = conn.execute("SELECT count(*) AS n FROM reco.users").fetchone()["n"]
        key = conn.execute("SELECT reco.create_api_key('default', 'bench') AS k").fetchone()["k"]
    pool = get_settings().api_pool_size
    console.print(f"data: {n_users:,} users, 24 features; server: {workers} worker(s) x {pool} read connections; "
                  f"load: {connections} connections, {rounds} x {seconds:g} s per endpoint")
    recommend = loadgen.get(lambda r: f"/v1/users/U{r.randint(1, users)}/recommendations?k=10", key)
    floor = loadgen.get(lambda r: "/v1/ping", key)
    bodies = bench.event_batches(out / "events.csv", batches, 1000)
    with bench.ServerProcess(url, port, workers) as server:
        loadgen.run("127.0.0.1", port, recommend, connections=connections, seconds=3)  # warm-up
        results: dict[str, list] = {"recommendations": [], "floor": []}
        for r in range(rounds):
            for name, request in (("recommendations", recommend), ("floor", floor)):
                api0, db0 = bench.tree_cpu(server.process.pid), bench.process_cpu("postgres: ")
                degraded0, lg0, ticks0 = bench.degraded_answers(port), bench.own_cpu(), bench.cpu_ticks()
                res = loadgen.run("127.0.0.1", port, request, connections=connections, seconds=seconds)
                lg_ms = 1000 * (bench.own_cpu() - lg0) / max(res.requests, 1)
                idle = bench.idle_share(ticks0)
                # a degraded answer (the popular list, after the statement timeout) is a 200 but no
                # recommendation: counted as an error
                res.errors += bench.degraded_answers(port) - degraded0
                api_ms = 1000 * (bench.tree_cpu(server.process.pid) - api0) / max(res.requests, 1)
                db_ms = 1000 * (bench.process_cpu("postgres: ") - db0) / max(res.requests, 1)
                results[name].append(res)
                console.print(f"round {r + 1}: {PATHS[name]}: {res.rate:,.0f} req/s, p50 {res.pct(0.5):.1f} ms, "
                              f"p99 {res.pct(0.99):.1f} ms, {res.errors} errors ({res.requests:,} requests; "
                              f"CPU per request: API {api_ms:.2f} ms, database {db_ms:.2f} ms, load generator "
                              f"{lg_ms:.2f} ms; CPU idle {idle:.0%})")
        for name, runs in results.items():
            rate = statistics.median(x.rate for x in runs)
            console.print(f"{PATHS[name]}, median of {rounds}: [bold]{rate:,.0f} req/s, "
                          f"p50 {statistics.median(x.pct(0.5) for x in runs):.1f} ms, "
                          f"p99 {statistics.median(x.pct(0.99) for x in runs):.1f} ms, "
                          f"{sum(x.errors for x in runs)} errors[/bold] "
                          f"(rounds: {', '.join(f'{x.rate:,.0f}' for x in runs)} req/s)")
        ratio = statistics.median(a.rate / max(b.rate, 1)
                                  for a, b in zip(results["recommendations"], results["floor"], strict=True))
        console.print(f"recommendations / floor (median of the rounds): [bold]{ratio:.2f}[/bold]")
        batch_iter = iter(bodies)
        ingest = loadgen.post("/v1/events", lambda r: next(batch_iter, bodies[-1]), key)
        with db.connect(url) as conn:
            before = conn.execute("SELECT count(*) AS n FROM reco.event_ids").fetchone()["n"]
        res = loadgen.run("127.0.0.1", port, ingest, connections=2, seconds=600, limit=len(bodies))
        with db.connect(url) as conn:
            accepted = conn.execute("SELECT count(*) AS n FROM reco.event_ids").fetchone()["n"] - before
        console.print(f"POST /v1/events, {res.requests} batches of 1,000 ({accepted:,} events stored): "
                      f"[bold]{accepted / res.seconds:,.0f} events/s[/bold], batch p50 {res.pct(0.5):.1f} ms, "
                      f"p99 {res.pct(0.99):.1f} ms, {res.errors} errors")


@bench_app.command("fairness")
def bench_fairness(
    users: Annotated[int, typer.Option(help="demo users of each tenant (24 features, 90 days)")] = 20_000,
    seed: int = 7,
    seconds: Annotated[float, typer.Option(help="length of each phase")] = 20.0,
    rounds: Annotated[int, typer.Option(min=1, help="alone / flood phase pairs, alternated")] = 3,
    streams: Annotated[int, typer.Option(help="flood: streams resending the 10,000-event batch")] = 6,
    console_rate: Annotated[float, typer.Option(help="flood: console pages a second")] = 17.0,
    budgets: Annotated[bool, typer.Option(help="--no-budgets: every tenant budget off (RECO_TENANT_*=0), "
                                               "to see what the flood does without them")] = True,
    port: int = 8766,
    reuse: Annotated[bool, typer.Option(help="reuse the data already in the bench database")] = False,
) -> None:
    """One tenant's flood against another's latencies: two tenants with the same data on a running
    API server; the quiet one's steady load alone and during the other's flood (event batches,
    console pages), alternated; p50/p99 of each, the ratio, the floor (/v1/ping) and the 429s."""
    import psycopg

    from app.tools import bench, bench_fairness

    base = db.database_url()
    out = demo_files(users, 24, 90, seed)
    url = db.with_dbname(base, bench.bench_name(base, "fairness"))
    if reuse:
        from app.migrate import migrate as run_migrate

        run_migrate(url)
    else:
        url = bench.bench_database(base, "fairness")
        for tenant in ("quiet", "flood"):
            with db.connect(url) as conn:
                conn.execute("SELECT reco.create_tenant(%s)", (tenant,))
            for kind in ("features", "plans", "users", "events"):
                run_import(kind, out / f"{kind}.csv", url=url, tenant=tenant, quiet=True)
            run_jobs("all", tenant=tenant, url=url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    with db.connect(url) as conn:
        quiet_key, flood_key = (conn.execute("SELECT reco.create_api_key(%s, 'bench') AS k", (t,)).fetchone()["k"]
                                for t in ("quiet", "flood"))
    batch = bench_fairness.flood_batch(out / "events.csv")
    plan = bench_fairness.Plan(rounds=rounds, seconds=seconds, streams=streams, console_rate=console_rate)
    env = {"RECO_API_RATE_LIMIT": "100", "RECO_LOG_LEVEL": "warning"}
    if not budgets:
        env |= {f"RECO_TENANT_{name.upper()}": "0" for name in bench_fairness.BUDGETS}
    console.print(f"server: 1 worker, budgets {'on (the defaults)' if budgets else 'off'}; quiet tenant: "
                  f"{plan.reads:g} recommendations, {plan.writes:g} single-event POSTs, {plan.pages:g} console "
                  f"pages, {plan.floor:g} pings a second; flood: {streams} streams resending a "
                  f"{len(batch) / 1e6:.1f} MB 10,000-event batch, {console_rate:g} console pages a second; "
                  f"{rounds} x ({seconds:g} s alone, {seconds:g} s flood)", markup=False, highlight=False)
    with bench.ServerProcess(url, port, 1, env=env):
        bench_fairness.run(port, plan, quiet_key, flood_key, batch, users, url,
                           lambda line: console.print(line, markup=False, highlight=False))
