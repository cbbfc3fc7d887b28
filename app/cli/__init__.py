"""The `reco` command line: the root app, and the command groups registered on it.

Each command group is a module of this package with a ``typer.Typer`` of its own (app/cli/jobs.py:
``jobs_app``); the commands at the root (``reco migrate``, ``reco demo``, …) are in modules whose Typer
has no name (``commands``) and are merged into the root's list. To add a group: write
``app/cli/<group>.py`` with ``<group>_app = typer.Typer(help=…, no_args_is_help=True)`` and its
commands, importing what it shares from app/cli/common.py, then add one line to GROUPS below (see
docs/layout.md). `reco --help` lists the root commands first, then the groups, each in this order.
"""

from __future__ import annotations

import typer

from app.cli import (
    bench,
    churn,
    data,
    db,
    demo,
    evaluation,
    experiments,
    jobs,
    keys,
    retention,
    security,
    serve,
    serving,
    settings,
    tenants,
)
from app.cli.common import report_db_error

app = typer.Typer(help="pgreco: a recommender that lives inside PostgreSQL.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

#: commands at the root of `reco`, in the order of `reco --help`
COMMANDS: list[typer.Typer] = [
    data.commands,        # migrate, import, generate, convert
    demo.commands,        # demo
    serve.commands,       # serve
    evaluation.commands,  # tune, evaluate
    serving.commands,     # recommend, starter, similar, plan
]

#: the command groups: `reco <name> …`, in the order of `reco --help`
GROUPS: list[tuple[str, typer.Typer]] = [
    ("db", db.db_app),
    ("experiment", experiments.experiment_app),
    ("scenario", experiments.scenario_app),
    ("metric", experiments.metric_app),
    ("analysts", security.analysts_app),
    ("settings", settings.settings_app),
    ("bench", bench.bench_app),
    ("jobs", jobs.jobs_app),
    ("tenants", tenants.tenants_app),
    ("keys", keys.keys_app),
    ("churn", churn.churn_app),
    ("retention", retention.retention_app),
]

#: `reco bench churn` lives with the churn commands (app/cli/churn.py)
bench.bench_app.command("churn")(churn.bench_churn)

for _commands in COMMANDS:
    app.add_typer(_commands)
for _name, _group in GROUPS:
    app.add_typer(_group, name=_name)


def main() -> None:
    """Console entry point: database errors are reported as one clear message, not a traceback."""
    import psycopg

    try:
        app()
    except psycopg.Error as exc:
        report_db_error(exc)
        raise SystemExit(1) from None
