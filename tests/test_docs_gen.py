"""The generated reference pages of the documentation site (docs/gen/): the SQL page lists every
public routine, table and view of a migrated database with its comment, the REST page every
operation of the OpenAPI document, the CLI page every command. `make docs` builds the site itself."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "gen"))

import cli_ref  # noqa: E402
import rest_api  # noqa: E402
import sql_api  # noqa: E402


def test_sql_reference_lists_every_public_object_with_its_comment(db_url: str) -> None:
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        page, warnings = sql_api.generate(conn)
        names = [r["proname"] for r in conn.execute(
            "SELECT DISTINCT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'reco' AND p.proname !~ '^_' AND p.prokind IN ('f', 'p')").fetchall()]
    assert warnings == [], "objects without COMMENT ON: " + "; ".join(warnings)
    for name in names:
        assert f"### reco.{name} " in page, name
    assert "### reco._" not in page  # private helpers stay out
    assert "### reco.interactions " in page and "### reco.effective_settings " in page
    # a comment's "Example:" becomes a code block
    section = page.split("### reco.recommend_features ")[1].split("\n### ")[0]
    assert "```sql\nSELECT * FROM reco.recommend_features('U42', 5);" in section


def test_rest_reference_lists_every_operation() -> None:
    from app.api.main import create_app

    doc = create_app(url="postgresql:///unused").openapi()
    page = rest_api.generate(doc)
    for path, item in doc["paths"].items():
        for method in item:
            if method in rest_api.METHODS:
                assert f"### {method.upper()} {path} " in page


def test_cli_reference_lists_every_command() -> None:
    page = cli_ref.generate()
    for command in ("reco migrate", "reco jobs run", "reco bench quality", "reco experiment report"):
        assert f"`{command}`" in page
