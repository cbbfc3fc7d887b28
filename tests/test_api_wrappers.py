"""sql/094_api_wrappers.sql, the reco.api_<name> wrappers written out, equals what docs/gen/api_wrappers.py
derives from the functions it wraps; a wrapper it no longer writes is dropped when the file is applied."""

from __future__ import annotations

import sys

import psycopg

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "docs" / "gen"))

import api_wrappers  # noqa: E402


def test_the_file_equals_what_the_generator_derives(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        text = api_wrappers.derive(conn)
    assert (ROOT / "sql" / api_wrappers.FILE).read_text() == text, (
        "sql/094_api_wrappers.sql is out of date: run .venv/bin/python docs/gen/api_wrappers.py")


def test_every_wrapper_in_the_catalog_is_written_out(conn) -> None:
    text = (ROOT / "sql" / api_wrappers.FILE).read_text()
    rows = conn.execute("""
        SELECT p.proname FROM pg_proc p
        WHERE p.pronamespace = 'reco'::regnamespace AND obj_description(p.oid, 'pg_proc') LIKE %s""",
                        ("%" + api_wrappers.MARK,)).fetchall()
    names = {r["proname"] for r in rows}
    assert {"api_console_overview", "api_upsert_users", "api_experiment_report"} <= names
    for name in names:
        assert f"CREATE OR REPLACE FUNCTION reco.{name}(" in text, name


def test_a_stale_wrapper_is_dropped(conn) -> None:
    conn.execute(f"""CREATE FUNCTION reco.api_gone(p_key text) RETURNS int LANGUAGE sql AS 'SELECT 1';
                     COMMENT ON FUNCTION reco.api_gone(text) IS 'old {api_wrappers.OLD_MARK}';
                     CREATE FUNCTION reco.api_kept(p_key text) RETURNS int LANGUAGE sql AS 'SELECT 1';""")
    # a generated wrapper whose parameter list changed is replaced, not left beside the new one
    conn.execute("""DROP FUNCTION reco.api_erase_user(text, text);
                    CREATE FUNCTION reco.api_erase_user(p_key text, p_user text) RETURNS jsonb LANGUAGE sql
                    AS 'SELECT NULL::jsonb'""")
    conn.execute(f"COMMENT ON FUNCTION reco.api_erase_user(text, text) IS 'x {api_wrappers.MARK}'")
    conn.execute((ROOT / "sql" / api_wrappers.FILE).read_text())
    assert conn.execute("SELECT to_regprocedure('reco.api_gone(text)') AS f").fetchone()["f"] is None
    assert conn.execute("SELECT to_regprocedure('reco.api_kept(text)') AS f").fetchone()["f"] is not None
    args = conn.execute("SELECT pg_get_function_arguments('reco.api_erase_user(text, text)'::regprocedure) AS a"
                        ).fetchone()["a"]
    assert args == "p_key text, p_user_id text"
