"""`reco keys …`: API keys, stored hashed, each bound to a tenant."""

from __future__ import annotations

from typing import Annotated

import typer

from app import db
from app.cli.common import (
    TenantOpt,
    console,
    err,
    print_rows,
)
from app.settings import get_settings

keys_app = typer.Typer(help="API keys: stored hashed, each bound to a tenant.", no_args_is_help=True)


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
        # an unknown tenant: the error and its hint
        rows = conn.execute("SELECT * FROM reco.list_api_keys(%s)", (tenant,)).fetchall()
    for r in rows:
        r["created_at"] = f"{r['created_at']:%Y-%m-%d %H:%M}"
        r["revoked_at"] = f"{r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else ""
    print_rows(rows, ["prefix", "tenant", "name", "created_at", "revoked_at"],
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
                     AND k.tenant_id <> reco.tenant_id(%(t)s)""", {"p": prefix, "t": tenant}).fetchone()
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
