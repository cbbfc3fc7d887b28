"""Migrations (empty -> head, re-run) and CSV import through the CLI."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from app.cli import app
from app.migrate import is_current, migrate, sql_files
from tests.helpers import PATIENT, ROOT

runner = CliRunner()

EXPECTED_TABLES = {
    "tenants", "users", "features", "plans", "events", "event_ids", "interactions",
    "setting_definitions", "settings", "sql_files",
}


def test_migrate_from_empty_then_rerun(empty_db):
    first = migrate(empty_db)
    assert first.alembic_from is None and first.alembic_to is not None
    assert sorted(first.sql_applied) == [p.name for p in sql_files()]
    with psycopg.connect(empty_db) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'reco' AND c.relkind IN ('r', 'p') AND NOT c.relispartition")}
        assert tables >= EXPECTED_TABLES
        # every public table and function is documented
        undocumented = conn.execute(
            """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'reco' AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition
                 AND obj_description(c.oid, 'pg_class') IS NULL""").fetchall()
        assert undocumented == []
        undocumented_fn = conn.execute(
            """SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = 'reco' AND p.proname NOT LIKE '\\_%'
                 AND obj_description(p.oid, 'pg_proc') IS NULL""").fetchall()
        assert undocumented_fn == []
        assert is_current(conn)
    second = migrate(empty_db)
    assert second.alembic_from == second.alembic_to == first.alembic_to
    assert second.sql_applied == []


def test_alembic_upgrade_head_from_repo_root(empty_db):
    env = {**os.environ, "RECO_DATABASE_URL": empty_db}
    proc = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=PATIENT)
    assert proc.returncode == 0, proc.stderr
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('reco.interactions') IS NOT NULL").fetchone()[0]


def _write(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    with path.open("w", newline="") as fh:
        csv.writer(fh, delimiter=delimiter).writerows(rows)
    return path


def test_csv_import_with_bad_rows_and_retry(cli_env, conn, tmp_path):
    features = _write(tmp_path / "features.csv", [
        ["feature_id", "name", "category", "requires_paid", "tags", "description", "active"],
        ["cutout", "Background cut-out, fast", "cut-out", "false", "ai|background", "Removes it.", "true"],
        ["batch", "Batch mode", "batch", "true", "", "", "true"],
        ["", "No id", "x", "false", "", "", "true"],
    ])
    res = runner.invoke(app, ["import", "features", str(features)])
    assert res.exit_code == 0, res.output
    assert "2 accepted" in res.output and "1 rejected" in res.output
    row = conn.execute("SELECT name, tags FROM reco.features WHERE feature_id = 'cutout'").fetchone()
    assert row == {"name": "Background cut-out, fast", "tags": ["ai", "background"]}

    users = _write(tmp_path / "users.csv", [
        ["user_id", "paid", "industry", "usage_band"],
        ["U1", "true", "fashion", "heavy"],
        ["U2", "nope", "media", "light"],
    ])
    res = runner.invoke(app, ["import", "users", str(users)])
    assert res.exit_code == 0, res.output
    attrs = conn.execute("SELECT attributes FROM reco.users WHERE user_id = 'U1'").fetchone()
    assert attrs["attributes"] == {"industry": "fashion", "usage_band": "heavy"}

    events = _write(tmp_path / "events.csv", [
        ["event_id", "user_id", "feature_id", "occurred_at", "kind", "success"],
        ["e1", "U1", "cutout", "2026-10-01T10:00:00Z", "use", "true"],
        ["e2", "U3", "batch", "1790848800", "", "false"],
        ["e3", "U1", "missing-feature", "2026-10-01T10:00:00Z", "use", "true"],
        ["e4", "U1", "cutout", "2026-02-30T10:00:00Z", "use", "true"],
        ["e5", "U1", "cutout", "2026-10-02T10:00:00Z", "use", "sometimes"],
    ])
    res = runner.invoke(app, ["import", "events", str(events)])
    assert res.exit_code == 0, res.output
    assert "2 accepted" in res.output and "3 rejected" in res.output
    rejected_file = tmp_path / "events.csv.rejected.csv"
    with rejected_file.open() as fh:
        rejected = list(csv.DictReader(fh))
    assert [(r["file_line"], r["field"], r["event_id"]) for r in rejected] == [
        ("4", "feature_id", "e3"), ("5", "occurred_at", "e4"), ("6", "success", "e5")]
    assert all(r["reason"] for r in rejected)

    before = conn.execute("SELECT * FROM reco.interactions ORDER BY 1, 2, 3").fetchall()
    res = runner.invoke(app, ["import", "events", str(events)])
    assert "0 accepted" in res.output and "2 duplicates" in res.output
    assert conn.execute("SELECT * FROM reco.interactions ORDER BY 1, 2, 3").fetchall() == before


def test_headerless_tab_separated_import_with_mapping(cli_env, conn, tmp_path):
    conn.execute("""SELECT reco.upsert_features('[{"feature_id": "242"}, {"feature_id": "302"}]')""")
    data = _write(tmp_path / "u.data", [["196", "242", "3", "881250949"],
                                        ["186", "302", "3", "891717742"]], delimiter="\t")
    res = runner.invoke(app, ["import", "events", str(data), "--delimiter", "tab",
                              "--columns", "user,item,rating,timestamp",
                              "--map", "user_id=user", "--map", "feature_id=item",
                              "--map", "occurred_at=timestamp"])
    assert res.exit_code == 0, res.output
    assert "2 accepted" in res.output
    assert conn.execute("SELECT count(*) AS n FROM reco.events").fetchone()["n"] == 2


def test_import_reports_unusable_files_clearly(cli_env, tmp_path):
    bad = _write(tmp_path / "events.csv", [["who", "what", "when"], ["U1", "x", "2026-01-01"]])
    res = runner.invoke(app, ["import", "events", str(bad)])
    assert res.exit_code == 2
    assert "no column for user_id, feature_id, occurred_at" in res.output
    res = runner.invoke(app, ["import", "events", str(bad), "--map", "user_id=nobody"])
    assert res.exit_code == 2 and "no column 'nobody'" in res.output
