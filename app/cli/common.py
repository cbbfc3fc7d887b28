"""What every `reco` command group shares: the consoles, the --tenant option, progress bars, tables,
JSON output, and how a database error is reported."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from app.settings import get_settings

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

TenantOpt = Annotated[str | None, typer.Option("--tenant", envvar="RECO_TENANT", show_envvar=False,
                                               help="Tenant slug (default: RECO_TENANT or 'default').")]


def external() -> bool:
    """Is the database RECO_DATABASE_URL (not the embedded server)? Says so on stderr."""
    if get_settings().database_url:
        err.print("RECO_DATABASE_URL is set: pgreco uses that server and does not manage it.")
        return True
    return False


def print_json(obj) -> None:
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
        err.print(f"hint: the database has no pgreco schema, or an older one: run `{prog()} migrate` first",
                  markup=False, highlight=False)


def prog() -> str:
    """How this CLI was called, for the commands it prints: `.venv/bin/reco` when called so
    (`make demo`), `reco` when it is on PATH."""
    arg0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(arg0) != "reco" or shutil.which("reco") == arg0:
        return "reco"
    with contextlib.suppress(ValueError):
        return str(Path(arg0).resolve().relative_to(Path.cwd()))
    return arg0


def progress_bars():
    """A progress display on stderr (a bar per task, kept when done)."""
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


def print_rows(rows: list[dict], columns: list[str], *, full: tuple[str, ...] = (),
               right: tuple[str, ...] = ()) -> None:
    """Rows as a table; the ``full`` columns (ids, names) are never cut short, the ``right`` ones
    (counts) are right-aligned."""
    from rich.table import Table

    table = Table()
    for c in columns:
        width = max([len(c), *(len(cell(r[c])) for r in rows)]) if c in full else None
        table.add_column(c, no_wrap=c in full, min_width=width, justify="right" if c in right else "left")
    for r in rows:
        table.add_row(*[cell(r[c]) for c in columns])
    print_table(table)


def print_table(table) -> None:
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


def cell(v) -> str:
    """A value as a table cell: floats to 4 places, JSON as JSON, NULL as nothing."""
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, dict | list):
        return json.dumps(v)
    return "" if v is None else str(v)
