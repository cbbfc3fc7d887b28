"""`reco analysts …`: which database roles read which tenant (sql/095_security.sql).

An analyst is a database role of its own (``CREATE ROLE alice LOGIN PASSWORD '…'``); granting it a
tenant makes it a member of reco_analyst (SELECT on the documented tables and views) and maps it
to the tenant in reco.analyst_tenants, which row-level security reads."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from app import db
from app.cli.common import TenantOpt, console

analysts_app = typer.Typer(help="Analyst roles: read-only SQL access to one tenant's rows (row-level security).",
                           no_args_is_help=True)
Role = Annotated[str, typer.Argument(help="the database role (it must exist: CREATE ROLE … LOGIN)")]


@analysts_app.command("grant")
def grant(role: Role, tenant: TenantOpt = None) -> None:
    """Let ROLE read the tenant's rows: SELECT reco.grant_analyst(ROLE, tenant)."""
    with db.connect() as conn:
        new = conn.execute("SELECT reco.grant_analyst(%s, %s) AS new", (role, tenant)).fetchone()["new"]
    console.print(f"{role} reads tenant {tenant or 'default'}" + ("" if new else " (already granted)"))


@analysts_app.command("revoke")
def revoke(role: Role, tenant: TenantOpt = None,
           all_: Annotated[bool, typer.Option("--all", help="every tenant (and out of reco_analyst)")] = False) -> None:
    """Stop ROLE reading the tenant (--all: every tenant); a role left with none leaves reco_analyst."""
    with db.connect() as conn:
        n = conn.execute("SELECT reco.revoke_analyst(%s, %s, %s) AS n", (role, tenant, all_)).fetchone()["n"]
    what = "every tenant" if all_ else f"tenant {tenant or 'default'}"
    console.print(f"{role}: {what} revoked ({n} grant{'s' if n != 1 else ''})")
    if not n:
        raise typer.Exit(1)


@analysts_app.command("list")
def list_() -> None:
    """The analyst roles and their tenants (reco.analyst_grants())."""
    with db.connect() as conn:
        rows = conn.execute("SELECT * FROM reco.analyst_grants()").fetchall()
    table = Table("role", "tenant", "granted", "in reco_analyst", "login")
    for r in rows:
        table.add_row(r["role_name"], r["tenant"] or "-",
                      f"{r['granted_at']:%Y-%m-%d %H:%M}" if r["granted_at"] else "",
                      "yes" if r["in_group"] else "no",
                      {True: "yes", False: "no", None: "role missing"}[r["can_login"]])
    console.print(table)
