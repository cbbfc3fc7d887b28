"""`reco settings …`: the settings' rules (sql/011_setting_rules.sql) and their documentation."""

from __future__ import annotations

import typer

from app import db
from app.cli.common import console
from app.settings_catalog import markdown, rows

settings_app = typer.Typer(help="Settings: their rules (type, range, unit), docs and repairs.", no_args_is_help=True)


@settings_app.command("docs")
def docs() -> None:
    """Print docs/settings.md: every setting's kind, allowed values, unit, default and meaning."""
    with db.connect() as conn:
        print(markdown(rows(conn)), end="")


@settings_app.command("repairs")
def repairs() -> None:
    """Stored values `reco migrate` found invalid under the rules, and what each became (reco.setting_repairs)."""
    with db.connect() as conn:
        found = conn.execute("SELECT t.slug, r.place, r.key, r.stored::text AS stored, r.repaired::text AS repaired,"
                             " r.reason, r.repaired_at FROM reco.setting_repairs r"
                             " JOIN reco.tenants t USING (tenant_id) ORDER BY r.repair_id").fetchall()
    for r in found:
        console.print(f"{r['repaired_at']:%Y-%m-%d %H:%M} {r['slug']} {r['place']} {r['key']} = {r['stored']} -> "
                      f"{r['repaired'] or 'dropped'} ({r['reason']})", markup=False)
    if not found:
        console.print("no stored setting needed a repair")
