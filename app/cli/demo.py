"""`reco demo`: the database, demo data, jobs, a tune run and the REST API in one command."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from app import db
from app.cli.common import (
    TenantOpt,
    console,
    err,
    prog,
    progress_bars,
)
from app.cli.data import print_import, run_import
from app.cli.jobs import run_jobs
from app.cli.serve import run_server
from app.settings import get_settings

commands = typer.Typer()

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
                   AND revoked_at IS NULL AND tenant_id = reco.tenant_id(%s)""", (key, tenant)).fetchone():
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


@commands.command()
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
    from app.migrate import migrate as run_migrate
    from app.tools.demodata import generate as gen

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
    with progress_bars() as bar:
        task = bar.add_task("generate", total=None)
        counts = gen(out, users=users, features=features, days=days, seed=seed,
                     progress=lambda n: bar.advance(task, n))
    console.print(f"[bold]generate[/bold]  {out}: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
    for kind in ("features", "plans", "users", "events"):
        print_import(run_import(kind, out / f"{kind}.csv", tenant=tenant, url=url))

    console.print("[bold]jobs[/bold]")
    run_jobs("all", tenant, url=url)

    # the tune job once, on a sample of the holdout (the whole search on 20,000 users would take
    # minutes; weekly, the job itself uses setting evaluation_users)
    from jobs.tune import tune as run_tune

    with progress_bars() as bar:
        task = bar.add_task("tune", total=None)
        tuned = run_tune(url, tenant, users=DEMO_TUNE_USERS,
                         progress=lambda step, _d, _t: bar.update(task, description=f"tune: {step}"[:60]))
        bar.update(task, total=1, completed=1, description="tune done")
    from rich.markup import escape

    console.print(f"[bold]tune[/bold]      {escape(tuned.message)}", highlight=False)
    if tuned.applied:
        run_jobs("all", tenant, url=url)

    with db.connect(url) as conn:
        rows = conn.execute("SELECT * FROM reco.tenant_row_counts(%s)", (tenant,)).fetchone()
        sample = conn.execute("SELECT user_id FROM reco.users WHERE tenant_id = reco.tenant_id(%s) "
                              "ORDER BY user_key LIMIT 1", (tenant,)).fetchone()
    console.print(f"[bold]tables[/bold]    tenant {tenant}: " + ", ".join(f"reco.{k}: {v:,}" for k, v in rows.items()),
                  highlight=False)
    who = sample["user_id"] if sample else "U1"
    reco, opt = prog(), ("" if tenant == "default" else f" --tenant {tenant}")
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
