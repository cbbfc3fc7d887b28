"""`reco migrate`, `reco import`, `reco generate`, `reco convert`: the schema and the data in it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app import db
from app.cli.common import (
    TenantOpt,
    console,
    err,
    progress_bars,
)
from app.settings import get_settings

#: root-level commands (no group of their own): merged into `reco`'s command list
commands = typer.Typer()


@commands.command()
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
    with progress_bars() as bar:
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


def print_import(result) -> None:
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


@commands.command("import")
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
    print_import(result)


@commands.command()
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
    churn: Annotated[bool, typer.Option(
        help="plant churn (saas): users fade and leave, by plan and segment; the truth goes to churn_truth.csv/json "
             "(app/tools/churn_sim.py)")] = False,
) -> None:
    """Write demo data (users.csv, features.csv, plans.csv, events.csv) for a SaaS product or a long-tail catalog."""
    from app.tools.demodata import SHAPES
    from app.tools.demodata import generate as gen

    if shape not in SHAPES:
        raise typer.BadParameter(f"--shape must be one of {', '.join(SHAPES)}")
    if features is None:
        features = 20_000 if shape == "long-tail" else 24
    if shape == "long-tail" and features < 100:
        raise typer.BadParameter("--features must be at least 100 for the long-tail shape")
    out.mkdir(parents=True, exist_ok=True)
    with progress_bars() as bar:
        task = bar.add_task("events", total=None)
        counts = gen(out, users=users, features=features, days=days, seed=seed,
                     progress=lambda n: bar.advance(task, n), shape=shape, churn=churn)
    console.print(f"wrote {out}: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))


@commands.command()
def convert(
    dataset: Annotated[str, typer.Argument(help="movielens (MovieLens 100K)")],
    src: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="the unpacked dataset folder")],
    out: Annotated[Path, typer.Option(help="output directory")] = Path(".reco/movielens"),
) -> None:
    """Turn a public dataset into pgreco CSV files (then `reco import` them)."""
    from app.tools.movielens import convert as convert_movielens

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



def demo_files(users: int, features: int, days: int, seed: int, shape: str = "saas") -> Path:
    """Benchmark data in .reco/bench-*, generated once per parameter set (the generator is deterministic)."""
    from app.tools.demodata import generate as gen

    suffix = "" if shape == "saas" else f"-{shape}"  # the saas cache keeps its old name
    out = get_settings().data_dir / f"bench-{users}-{features}-{days}-{seed}{suffix}"
    if not (out / "events.csv").exists():
        out.mkdir(parents=True, exist_ok=True)
        with progress_bars() as bar:
            task = bar.add_task("generate", total=None)
            gen(out, users=users, features=features, days=days, seed=seed,
                progress=lambda n: bar.advance(task, n), shape=shape)
    return out
