"""`reco tenants …`: create, list, drop, and each tenant's budgets."""

from __future__ import annotations

from typing import Annotated

import typer

from app import db
from app.cli.common import (
    console,
    err,
    print_rows,
)
from app.settings import get_settings

tenants_app = typer.Typer(help="Tenants: each a catalog, users, events, settings and keys of its own.",
                          no_args_is_help=True)

Slug = Annotated[str, typer.Argument(help="the tenant's slug (1-63 characters: a-z, 0-9, '_', '-')")]


@tenants_app.command("create")
def tenants_create(slug: Slug) -> None:
    """Create a tenant: SELECT reco.create_tenant(SLUG) (idempotent)."""
    with db.connect() as conn:
        existed = conn.execute("SELECT 1 FROM reco.tenants WHERE slug = %s", (slug,)).fetchone()
        tid = conn.execute("SELECT reco.create_tenant(%s) AS id", (slug,)).fetchone()["id"]
    console.print(f"tenant {slug} {'exists' if existed else 'created'} (tenant_id {tid}); "
                  f"use it with --tenant {slug} or RECO_TENANT={slug}", markup=False, highlight=False)


@tenants_app.command("list")
def tenants_list(
    scopes: Annotated[bool, typer.Option("--scopes", help="also the evaluation scopes (temporary tenants "
                                                          "of reco evaluate and reco tune)")] = False,
) -> None:
    """The tenants with their users, features, events and active API keys."""
    with db.connect() as conn:
        rows = conn.execute("SELECT * FROM reco.tenant_overview(NULL, %s)", (scopes,)).fetchall()
    for r in rows:
        r["created_at"] = f"{r['created_at']:%Y-%m-%d %H:%M}"
        for k in ("users", "features", "events", "keys"):
            r[k] = f"{r[k]:,}"
    columns = ["tenant", "tenant_id", "users", "features", "events", "keys", "created_at"]
    print_rows(rows, [*columns, "evaluation_of"] if scopes else columns, full=("tenant", "created_at"),
           right=("tenant_id", "users", "features", "events", "keys"))


@tenants_app.command("drop")
def tenants_drop(slug: Slug,
                 yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False) -> None:
    """Delete a tenant and every row it owns: SELECT reco.drop_tenant(SLUG) (not 'default')."""
    with db.connect() as conn:
        # an unknown tenant: the error and its hint
        (r,) = conn.execute("SELECT * FROM reco.tenant_overview(%s, true)", (slug,)).fetchall()
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
    print_rows(budget_table(Budget.defaults(get_settings()), overrides), ["budget", "value", "from"],
           full=("budget", "from"), right=("value",))
