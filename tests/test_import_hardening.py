"""CSV import: malformed lines are rejected one by one; staging never outlives its import."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from app.cli import app
from app.importer import MALFORMED, import_csv
from tests.helpers import PATIENT, ROOT, backend_gone, wait_for

runner = CliRunner()

HEADER = b"event_id,user_id,feature_id,occurred_at,kind,success\n"


def _stages(conn) -> list[str]:
    return [r["relname"] for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'reco' AND c.relkind = 'r' AND c.relname LIKE '\\_stage\\_%' ORDER BY 1")]


def _rejects(path: Path, delimiter: str = ",") -> list[dict]:
    with path.with_name(path.name + ".rejected.csv").open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


def test_malformed_lines_are_rejected_and_the_rest_imported(cli_env, conn, tmp_path):
    conn.execute("""SELECT reco.upsert_features('[{"feature_id": "cutout"}, {"feature_id": "batch"}]')""")
    lines = [
        HEADER,                                                           # 1
        b"e1,U1,cutout,2026-10-01T10:00:00Z,use,true\n",                  # 2 good
        b"e2,U1,cutout,2026-10-01T11:00:00Z,use,true,EXTRA\n",            # 3 extra column
        b"e3,U1,cutout,2026-10-01T12:00:00Z,use\n",                       # 4 missing column
        b'e4,U1,"cutout,2026-10-01T13:00:00Z,use,true\n',                 # 5 quote opened here ...
        b'e5,U1,cutout",2026-10-01T14:00:00Z,use,true,x\n',               # 6 ... closed here: 7 fields
        b"e6,U2,batch,2026-10-01T15:00:00Z,use,false\n",                  # 7 good
        b"\n",                                                            # 8 blank: skipped
        b"e7,U2,batch,2026-10-01T16:00:00Z,use,tru\xff\n",                # 9 not UTF-8
        b"e8,U2,bat\x00ch,2026-10-01T17:00:00Z,use,true\n",               # 10 NUL
        b"e9,U2,batch,2026-02-30T10:00:00Z,use,true\n",                   # 11 field-level: bad date
        b'e10,U3,"batch,\nmode",2026-10-01T18:00:00Z,use,true\n',         # 12-13 quoted newline: well-formed
        b"e11,U3,cutout,2026-10-01T19:00:00Z,use,\n",                     # 14 good (success not given)
        b'e12,U3,cutout,2026-10-01T20:00:00Z,use,"true\n',                # 15 quote never closed
    ]
    path = tmp_path / "events.csv"
    path.write_bytes(b"".join(lines))

    res = runner.invoke(app, ["import", "events", str(path)])
    assert res.exit_code == 0, res.output
    assert "3 accepted" in res.output and "8 rejected" in res.output, res.output
    assert f"{MALFORMED}: 6" in res.output  # the summary of the reasons
    stored = [r["event_id"] for r in conn.execute("SELECT event_id FROM reco.events ORDER BY event_id")]
    assert stored == ["e1", "e11", "e6"]

    rejected = _rejects(path)
    got = [(r["file_line"], r["field"], r["event_id"]) for r in rejected]
    assert got == [("3", "csv", "e2"), ("4", "csv", "e3"), ("5", "csv", "e4"), ("9", "csv", "e7"),
                   ("10", "csv", "e8"), ("11", "occurred_at", "e9"), ("12", "feature_id", "e10"),
                   ("15", "csv", "e12")]
    reasons = {r["file_line"]: r["reason"] for r in rejected}
    assert reasons["3"] == "7 fields, expected 6"
    assert reasons["4"] == "5 fields, expected 6"
    assert reasons["5"].startswith("7 fields, expected 6") and "unterminated quote" in reasons["5"]
    assert "not valid utf-8" in reasons["9"]
    assert "NUL" in reasons["10"]
    assert "unterminated quoted field" in reasons["15"]
    extra = next(r for r in rejected if r["file_line"] == "3")
    assert extra[None] == ["EXTRA"]  # the record's fields as they were, the extra one included
    assert _stages(conn) == []

    # fixed and re-imported: idempotent, the good rows are duplicates now
    res = runner.invoke(app, ["import", "events", str(path)])
    assert "0 accepted" in res.output and "3 duplicates" in res.output, res.output


def test_malformed_line_in_a_headerless_file_and_multiline_fields(conn, db_url, tmp_path):
    conn.execute("""SELECT reco.upsert_features('[{"feature_id": "242"}]')""")
    data = tmp_path / "u.data"
    data.write_text("196\t242\t3\t881250949\n186\t242\t3\n22\t242\t1\t891717742\n")
    result = import_csv(db_url, "events", data, delimiter="\t",
                        columns=["user", "item", "rating", "timestamp"],
                        mapping={"user_id": "user", "feature_id": "item", "occurred_at": "timestamp"})
    assert (result.rows, result.accepted, result.rejected) == (3, 2, 1)
    assert result.reasons == {MALFORMED: 1}
    assert [(r["file_line"], r["reason"]) for r in _rejects(data, "\t")] == [("2", "3 fields, expected 4")]

    features = tmp_path / "features.csv"
    features.write_text('feature_id,name,description\n'
                        'a,A,"two\nlines"\n'
                        'b,B,x,y\n'
                        'c,C,\n')
    result = import_csv(db_url, "features", features)
    assert (result.rows, result.accepted, result.rejected) == (3, 2, 1)
    assert [(r["file_line"], r["field"]) for r in _rejects(features)] == [("4", "csv")]  # physical line
    rows = conn.execute("SELECT feature_id, description FROM reco.features "
                        "WHERE feature_id IN ('a', 'c') ORDER BY 1").fetchall()
    assert rows == [{"feature_id": "a", "description": "two\nlines"}, {"feature_id": "c", "description": None}]


def test_stale_staging_of_a_dead_import_is_dropped_live_one_kept(conn, db_url, tmp_path):
    """A killed import leaves its staging table (raw CSV rows); the next import drops it,
    but never the staging of an import still running in another session."""
    dead = psycopg.connect(db_url, autocommit=True)
    dead_stage = dead.execute("SELECT reco.create_import_stage(ARRAY['user_id', 'email'])").fetchone()[0]
    dead.execute(f"INSERT INTO reco.{dead_stage} (user_id, email) VALUES ('U1', 'u1@example.com')")
    live = psycopg.connect(db_url, autocommit=True)
    live_pid = live.info.backend_pid

    try:
        live_stage = live.execute("SELECT reco.create_import_stage(ARRAY['user_id'])").fetchone()[0]
        dead_pid = dead.info.backend_pid
        dead.close()  # the import's client died: the server ends its session, and its lock
        backend_gone(conn, dead_pid)
        assert _stages(conn) == sorted([dead_stage, live_stage])

        users = tmp_path / "users.csv"
        users.write_text("user_id,paid\nU9,true\n")
        assert import_csv(db_url, "users", users).accepted == 1
        assert _stages(conn) == [live_stage]
        # the live session's own stages are not stale to itself either
        assert live.execute("SELECT reco.drop_stale_import_stages()").fetchone()[0] == 0
        assert _stages(conn) == [live_stage]
    finally:
        live.close()
    backend_gone(conn, live_pid)
    assert conn.execute("SELECT reco.drop_stale_import_stages() AS n").fetchone()["n"] == 1
    assert _stages(conn) == []


def test_killed_reco_import_leaves_nothing_behind_after_the_next_import(conn, db_url, tmp_path):
    conn.execute("""SELECT reco.upsert_features('[{"feature_id": "f1"}]')""")
    big = tmp_path / "events.csv"
    with big.open("w") as fh:
        fh.write("event_id,user_id,feature_id,occurred_at,kind,success\n")
        for i in range(300_000):
            fh.write(f"k{i},U{i % 5000},f1,2026-10-01T10:{i // 6000 % 60:02d}:00Z,use,true\n")
    env = {**os.environ, "RECO_DATABASE_URL": db_url}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "import", "events", str(big)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _stages(conn) or proc.poll() is not None, what="the import to create its staging")
        assert proc.poll() is None, "the import ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(PATIENT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(_stages(conn)) == 1  # what the issue found: the raw rows stay behind

    # the killed session's backend may still finish its statement: until it has ended, its staging is live
    wait_for(lambda: not conn.execute("""SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
                                         AND backend_type = 'client backend' AND pid <> pg_backend_pid()""").fetchone(),
             what="the killed import's backend to exit")
    small = tmp_path / "users.csv"
    small.write_text("user_id\nU1\n")
    import_csv(db_url, "users", small)
    assert _stages(conn) == []


def test_erasure_and_drop_tenant_drop_a_dead_imports_staging(conn, db_url):
    """The raw rows of a killed import are personal data too: erasing a user, or dropping a
    tenant, removes staging tables no live import holds."""
    for action in ("erase", "drop"):
        conn.execute("SELECT reco.create_tenant('t2')")
        conn.execute("SELECT reco.upsert_users('[{\"user_id\": \"U1\"}]', 't2')")
        dead = psycopg.connect(db_url, autocommit=True)
        stage = dead.execute("SELECT reco.create_import_stage(ARRAY['user_id', 'email'])").fetchone()[0]
        dead.execute(f"INSERT INTO reco.{stage} (user_id, email) VALUES ('U1', 'u1@example.com')")
        pid = dead.info.backend_pid
        dead.close()
        backend_gone(conn, pid)
        assert _stages(conn) == [stage]
        if action == "erase":
            conn.execute("SELECT reco.erase_user('U1', 't2')")
            conn.execute("SELECT reco.drop_tenant('t2')")
        else:
            conn.execute("SELECT reco.drop_tenant('t2')")
        assert _stages(conn) == [], action


def test_ctrl_c_during_import_stops_and_says_what_was_stored(cli_env, conn, tmp_path, monkeypatch):
    """Ctrl-C (SIGINT) after the first merged chunk: no further chunk starts, the summary says how
    many rows are stored, and running the same import again completes it (ingest is idempotent)."""
    import rich.progress

    import app.importer
    from app.cli import app as cli

    monkeypatch.setattr(app.importer, "CHUNK_ROWS", 10)
    path = tmp_path / "users.csv"
    path.write_text("user_id,plan\n" + "".join(f"u{i},free\n" for i in range(200)))
    advance = rich.progress.Progress.advance
    sent = []

    def advance_then_interrupt(self, task_id, n=1):
        advance(self, task_id, n)
        if self._tasks[task_id].description.startswith("users merge") and not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: delivered to the main thread

    monkeypatch.setattr(rich.progress.Progress, "advance", advance_then_interrupt)
    result = CliRunner().invoke(cli, ["import", "users", str(path)])
    assert result.exit_code == 130, result.output
    stored = conn.execute("SELECT count(*) AS n FROM reco.users").fetchone()["n"]
    assert 10 <= stored < 200  # the first chunk, perhaps the one running beside it; not all 20
    assert "interrupted" in result.stderr and "of 200 rows merged and stored" in result.stderr
    assert f"{stored} accepted" in result.stderr  # what it says was stored is what is there
    assert "idempotent" in result.stderr
    assert not _stages(conn)

    monkeypatch.setattr(rich.progress.Progress, "advance", advance)
    result = CliRunner().invoke(cli, ["import", "users", str(path)])
    assert result.exit_code == 0, result.output
    assert conn.execute("SELECT count(*) AS n FROM reco.users").fetchone()["n"] == 200
