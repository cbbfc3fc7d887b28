"""`reco serve`: the REST API under uvicorn."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from app import db
from app.cli.common import (
    console,
)
from app.settings import get_settings

commands = typer.Typer()


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


@commands.command()
def serve(host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="port")] = 8000,
          workers: Annotated[int, typer.Option(min=0, help="processes (default 0: one per 4 cores)")] = 0) -> None:
    """Serve the REST API (OpenAPI docs at /docs; one log line per request, RECO_LOG_LEVEL=warning for errors
    only)."""
    from app.api.main import start_line

    workers = workers or default_workers()
    console.print(start_line(host, port, workers), markup=False, highlight=False)
    run_server(host, port, workers)
