"""Robustness: a job whose backend died, evaluation without eligible users, planner statistics
after a burst of ingests."""

from __future__ import annotations

import json
import threading

import psycopg
import pytest
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from jobs.runner import list_jobs
from tests.helpers import PATIENT, wait_for

runner = CliRunner()

# ---------------------------------------------------------------------------------------------
# 1. a killed job is shown failed
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def sleepy_job(conn):
    """A test-only job 'sleepy' whose body sleeps test.sleep seconds (a session setting; default 60)."""
    conn.execute("""
        CREATE FUNCTION public.test_sleepy_job(p_tenant_id int) RETURNS bigint LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_sleep(coalesce(nullif(current_setting('test.sleep', true), '')::float8, 60));
            RETURN 1;
        END $$""")
    conn.execute("""INSERT INTO reco.jobs (name, procedure, schedule, depends_on, position, description, in_all)
                    VALUES ('sleepy', 'public.test_sleepy_job', '0 0 * * *', '{}', 999, 'sleeps (test)', false)""")
    return "sleepy"


def test_killed_job_is_shown_failed_and_runs_again(conn, db_url, sleepy_job):
    victim = psycopg.connect(db_url, autocommit=True)
    victim.execute("SET test.sleep = '3600'")  # still running when the test kills it, however slow the machine
    pid = victim.info.backend_pid
    errors: list[BaseException] = []

    def run() -> None:
        try:
            victim.execute("CALL reco.run_job('sleepy', 'default')")
        except psycopg.Error as exc:  # the connection dies with its backend
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        run_row = wait_for(lambda: conn.execute(
            "SELECT run_id, status, backend_pid FROM reco.job_runs WHERE job = 'sleepy'").fetchone())
        assert run_row["status"] == "running" and run_row["backend_pid"] == pid
        # alive: nothing to mark
        assert conn.execute("SELECT reco.fail_orphaned_job_runs() AS n").fetchone()["n"] == 0
        # pg_terminate_backend with a timeout waits until the backend has exited
        assert conn.execute("SELECT pg_terminate_backend(%s, %s) AS ok", (pid, int(PATIENT * 1000))).fetchone()["ok"]
        thread.join(PATIENT)
        assert errors, "the job's connection should have died with its backend"
    finally:
        victim.close()

    # the listing shows the truth
    job = next(j for j in list_jobs(conn) if j.name == "sleepy")
    assert job.last_status == "failed"
    row = conn.execute("SELECT status, message, finished_at FROM reco.job_runs WHERE run_id = %s",
                       (run_row["run_id"],)).fetchone()
    assert row["status"] == "failed" and row["finished_at"] is not None
    assert row["message"].startswith("the backend running this job ended (killed or crashed) at or before ")

    # the advisory lock died with the backend: a new run is not skipped
    conn.execute("SET test.sleep = '0'")
    conn.execute("CALL reco.run_job('sleepy', 'default')")
    runs = conn.execute("SELECT status FROM reco.job_runs WHERE job = 'sleepy' ORDER BY run_id").fetchall()
    assert [r["status"] for r in runs] == ["failed", "succeeded"]


def test_run_job_marks_a_dead_backends_run_failed(conn, sleepy_job):
    """A run left 'running' by a backend that no longer exists (a pid reused by another session
    counts as gone: its start time differs) is failed by the next run_job call."""
    me = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
    conn.execute("""INSERT INTO reco.job_runs (job, tenant, status, backend_pid, backend_start, started_at)
                    VALUES ('sleepy', 'default', 'running', %s, '2000-01-01', now() - interval '1 hour'),
                           ('sleepy', 'default', 'running', NULL, NULL, '2000-01-01')""", (me,))
    conn.execute("SET test.sleep = '0'")
    conn.execute("CALL reco.run_job('sleepy', 'default')")
    runs = conn.execute("SELECT status, message FROM reco.job_runs WHERE job = 'sleepy' ORDER BY run_id").fetchall()
    assert [r["status"] for r in runs] == ["failed", "failed", "succeeded"]
    assert all("killed or crashed" in r["message"] for r in runs[:2])


# ---------------------------------------------------------------------------------------------
# 2. evaluation of a tenant without eligible users
# ---------------------------------------------------------------------------------------------


def _one_feature_each(conn) -> None:
    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb([{"feature_id": "a"}, {"feature_id": "b"}]),))
    conn.execute("SELECT reco.ingest_events(%s)", (Jsonb([
        {"user_id": "U1", "feature_id": "a", "occurred_at": "2026-10-01T12:00:00Z"},
        {"user_id": "U1", "feature_id": "a", "occurred_at": "2026-10-02T12:00:00Z"},
        {"user_id": "U2", "feature_id": "b", "occurred_at": "2026-10-03T12:00:00Z"}]),))


@pytest.mark.parametrize("data", ["empty", "one feature each"])
def test_evaluate_without_eligible_users_returns_no_rows(conn, data):
    if data != "empty":
        _one_feature_each(conn)
    assert conn.execute("SELECT * FROM reco.evaluate()").fetchall() == []
    # the run is recorded, with no user, and its scope is gone
    run = conn.execute("SELECT users FROM reco.evaluation_runs ORDER BY run_id DESC LIMIT 1").fetchone()
    assert run == {"users": 0}
    assert conn.execute("SELECT count(*) AS n FROM reco.tenants WHERE evaluation_of IS NOT NULL").fetchone()["n"] == 0


@pytest.mark.parametrize("data", ["empty", "one feature each"])
def test_cli_evaluate_without_eligible_users(cli_env, data):
    from app.cli import app

    if data != "empty":
        with psycopg.connect(cli_env, autocommit=True) as c:
            _one_feature_each(c)
    res = runner.invoke(app, ["evaluate"])
    assert res.exit_code == 0, res.output
    assert "no eligible users" in res.output
    res = runner.invoke(app, ["evaluate", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["users"] == 0 and out["results"] == {}
    res = runner.invoke(app, ["evaluate", "--grid", "--apply"])
    assert res.exit_code == 0, res.output
    assert "no eligible users" in res.output


# ---------------------------------------------------------------------------------------------
# 3. statistics of what a burst of ingests wrote, before a job reads it
# ---------------------------------------------------------------------------------------------


def _scans(node: dict) -> list[str]:
    """The relations scanned in a plan subtree."""
    found = []
    if "Relation Name" in node:  # with auto_explain.log_verbose, "Schema" tells a temporary table
        schema = node.get("Schema", "")
        found.append(f"{schema}.{node['Relation Name']}" if schema.startswith("pg_temp") else node["Relation Name"])
    for child in node.get("Plans", []):
        found += _scans(child)
    return found


def _self_joins(node: dict) -> list[tuple[str, str]]:
    """(join type, relation) for every join node whose outer and inner sides both scan R: reco.interactions,
    or a temporary copy of it (pg_temp) — the co-occurrence self-join, whatever the statement's text."""
    found = []
    sides = [c for c in node.get("Plans", []) if c.get("Parent Relationship") in ("Outer", "Inner")]
    if node["Node Type"] in ("Nested Loop", "Hash Join", "Merge Join") and len(sides) == 2:
        for rel in set(_scans(sides[0])) & set(_scans(sides[1])):
            if rel == "interactions" or rel.startswith("pg_temp"):
                found.append((node["Node Type"], rel))
    for child in node.get("Plans", []):
        found += _self_joins(child)
    return found


def _ingest_random(conn, tenant: str, users: int, per_user: int, features: int, seed: int) -> None:
    """``users`` new users (named after the seed), ``per_user`` distinct features each."""
    import random

    rnd = random.Random(seed)
    events = [{"user_id": f"{tenant}-{seed}-U{u}", "feature_id": f"f{f}", "occurred_at": "2026-10-01T12:00:00Z"}
              for u in range(users) for f in rnd.sample(range(features), per_user)]
    for i in range(0, len(events), 2000):
        report = conn.execute("SELECT reco.ingest_events(%s, %s) AS r",
                              (Jsonb(events[i:i + 2000]), tenant)).fetchone()["r"]
        assert report["accepted"] == len(events[i:i + 2000])


def _stats_flushed(conn, changed: int) -> None:
    conn.execute("SELECT pg_stat_force_next_flush()")  # this backend's counters, at its next idle moment
    wait_for(lambda: conn.execute(
        "SELECT n_mod_since_analyze >= %s AS ok FROM pg_stat_user_tables WHERE relid = 'reco.interactions'::regclass",
        (changed,)).fetchone()["ok"])


def test_jobs_analyze_stale_interactions_before_reading_them(conn):
    """Interactions of a new tenant, written by reco.ingest_events (no ANALYZE on that path), while
    the table's statistics know only the other tenant: planned on those, the self-join of R that
    builds co-occurrences is a nested loop over index probes (> 7 min for 100k rows). reco.run_job
    analyses stale tables first, so the job's self-join is a hash (or merge) join."""
    conn.execute("ALTER TABLE reco.interactions SET (autovacuum_enabled = off)")  # only our ANALYZEs
    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb([{"feature_id": f"f{f}"} for f in range(60)]),))
    _ingest_random(conn, "default", 200, 10, 60, seed=1)
    conn.execute("ANALYZE reco.interactions")  # statistics: one tenant, 2,000 rows
    conn.execute("SELECT reco.create_tenant('fresh')")
    conn.execute("SELECT reco.upsert_features(%s, 'fresh')", (Jsonb([{"feature_id": f"f{f}"} for f in range(60)]),))
    _ingest_random(conn, "fresh", 300, 15, 60, seed=2)
    _stats_flushed(conn, 4500)
    tid = conn.execute("SELECT reco._tenant_id('fresh') AS t").fetchone()["t"]

    # the opposite check: without an ANALYZE, R joined to itself is planned as a nested loop
    cooccurrence = """EXPLAIN (FORMAT JSON)
        SELECT a.feature_key, b.feature_key, count(*) FROM reco.interactions a
        JOIN reco.interactions b ON b.tenant_id = a.tenant_id AND b.user_key = a.user_key
        WHERE a.tenant_id = %(t)s AND b.tenant_id = %(t)s GROUP BY 1, 2"""

    def joins() -> list[tuple[str, str]]:
        return _self_joins(conn.execute(cooccurrence, {"t": tid}).fetchone()["QUERY PLAN"][0]["Plan"])

    assert ("Nested Loop", "interactions") in joins()

    # the job, under auto_explain: every statement's plan as a notice
    try:
        conn.execute("LOAD 'auto_explain'")
    except psycopg.Error:
        pytest.skip("auto_explain cannot be loaded here")
    plans: list[dict] = []

    def notice(d: psycopg.errors.Diagnostic) -> None:
        msg = d.message_primary or ""
        if "plan:" in msg and "{" in msg:
            plans.append(json.loads(msg[msg.index("{"):]))

    conn.add_notice_handler(notice)
    for stmt in ("SET auto_explain.log_min_duration = 0", "SET auto_explain.log_nested_statements = on",
                 "SET auto_explain.log_format = json", "SET auto_explain.log_verbose = on",
                 "SET auto_explain.log_level = notice",
                 "SET client_min_messages = notice"):
        conn.execute(stmt)
    conn.execute("CALL reco.run_job('feature_neighbors', 'fresh')")
    conn.execute("RESET auto_explain.log_min_duration")
    assert conn.execute("SELECT status FROM reco.job_runs ORDER BY run_id DESC LIMIT 1").fetchone() == {
        "status": "succeeded"}
    self_joins = [j for p in plans for j in _self_joins(p["Plan"])]
    # the co-occurrences were joined, and never by a nested loop (over interactions or a copy of them)
    assert self_joins, [p.get("Query Text") for p in plans]
    assert not [j for j in self_joins if j[0] == "Nested Loop"], self_joins
    # run_job analysed the stale table: the same statement is now a hash (or merge) join
    assert conn.execute("SELECT n_mod_since_analyze < 450 AS ok FROM pg_stat_user_tables "
                        "WHERE relid = 'reco.interactions'::regclass").fetchone()["ok"]
    assert {j[0] for j in joins()} <= {"Hash Join", "Merge Join"} and joins()


def test_analyze_if_stale(conn):
    conn.execute("ALTER TABLE reco.interactions SET (autovacuum_enabled = off)")
    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb([{"feature_id": f"f{f}"} for f in range(20)]),))
    _ingest_random(conn, "default", 100, 10, 20, seed=3)
    _stats_flushed(conn, 1000)

    def stale() -> bool:
        return conn.execute("SELECT reco._analyze_if_stale('reco.interactions') AS a").fetchone()["a"]

    assert stale()          # never analysed, rows: analysed now
    assert not stale()      # fresh
    _ingest_random(conn, "default", 5, 10, 20, seed=4)  # 50 more rows: 5 %
    _stats_flushed(conn, 50)
    assert not stale()
    _ingest_random(conn, "default", 10, 10, 20, seed=5)  # 150 rows changed since: 15 %
    _stats_flushed(conn, 150)
    assert stale()
    # a partitioned table: its partitions' counters
    assert conn.execute("SELECT reco._analyze_if_stale('reco.events') AS a").fetchone()["a"]


def test_csv_import_analyzes_what_it_wrote(db_url, conn, tmp_path):
    from app.importer import import_csv

    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb([{"feature_id": f"f{f}"} for f in range(7)]),))
    (tmp_path / "events.csv").write_text("user_id,feature_id,occurred_at\n" + "".join(
        f"U{u},f{f},2026-10-01T12:00:00Z\n" for u in range(50) for f in range(u % 7 + 1)))
    result = import_csv(db_url, "events", tmp_path / "events.csv")
    assert result.accepted == sum(u % 7 + 1 for u in range(50))
    assert result.analyzed == ["reco.interactions", "reco.users", "reco.events", "reco.event_ids"]
    analysed = {r["relname"]: r["reltuples"] for r in conn.execute(
        "SELECT relname, reltuples FROM pg_class WHERE oid IN ('reco.interactions'::regclass, 'reco.users'::regclass)")}
    assert analysed == {"interactions": result.accepted, "users": 50}
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT reco.analyze_imported('ratings')")


def test_the_runner_vacuums_the_tables_a_job_rewrote(conn, db_url):
    """A job deletes and re-inserts a tenant's serving rows; the runner vacuums those tables right
    after it, so requests do not read through the dead rows until autovacuum comes."""
    from jobs import REWRITES
    from jobs.runner import run_job

    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb([{"feature_id": f} for f in "abc"]),))
    conn.execute("SELECT reco.ingest_events(%s)", (Jsonb(
        [{"user_id": u, "feature_id": f, "occurred_at": "2026-10-15T00:00:00Z"}
         for u in ("U1", "U2") for f in "abc"]),))
    run_job(db_url, "all", "default")
    run_job(db_url, "feature_neighbors", "default")  # the second run leaves the first one's rows dead
    finished = conn.execute("SELECT max(finished_at) AS t FROM reco.job_runs WHERE job = 'feature_neighbors'"
                            ).fetchone()["t"]
    for table in REWRITES["feature_neighbors"]:
        row = conn.execute("SELECT last_vacuum FROM pg_stat_user_tables WHERE relid = %s::regclass",
                           (table,)).fetchone()
        # (the dead-row count is no check: the job's own counts reach the statistics after the vacuum)
        assert row["last_vacuum"] is not None and row["last_vacuum"] >= finished, table
