"""Issue 13's probes on the SQL side: reads write no users, erasure is complete whether or not the
jobs ran, a stray old event does not move the decay epoch, /plan reads bounded rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb


def _key(conn) -> str:
    return conn.execute("SELECT reco.create_api_key() AS k").fetchone()["k"]


def _serve(conn, key: str, user: str, rid: str) -> dict:
    return conn.execute("SELECT reco.api_serve(%s, 'recommendations', %s, 3, '{}', %s, true, false)::jsonb AS b",
                        (key, user, rid)).fetchone()["b"]


def _users(conn) -> int:
    return conn.execute("SELECT count(*) AS n FROM reco.users").fetchone()["n"]


def test_reads_never_write_users_and_exposures_wait_for_them(world):
    key = _key(world)
    before = _users(world)
    for i in range(50):
        assert _serve(world, key, f"stranger-{i}", f"r{i}")["items"]
    world.execute("SELECT * FROM reco.recommend_features('stranger-x', 3)")
    world.execute("SELECT reco.log_exposures('r-log', 'stranger-y', ARRAY['a'])")
    assert _users(world) == before
    pending = world.execute("SELECT count(*) AS n FROM reco.exposures WHERE user_key IS NULL").fetchone()["n"]
    assert pending == 51
    # the id's first event creates the user; what it was shown is attached and marked used
    shown = world.execute("SELECT f.feature_id FROM reco.exposures x JOIN reco.features f"
                          " ON f.tenant_id = x.tenant_id AND f.feature_key = x.feature_keys[1]"
                          " WHERE x.request_id = 'r7'").fetchone()["feature_id"]
    world.execute("SELECT reco.ingest_events(%s)", (Jsonb([{
        "user_id": "stranger-7", "feature_id": shown, "occurred_at": datetime.now(UTC).isoformat()}]),))
    x = world.execute("SELECT x.user_key, x.user_id, x.used_keys = x.feature_keys[1:1] AS used, u.user_id AS owner"
                      " FROM reco.exposures x JOIN reco.users u ON u.user_key = x.user_key"
                      " WHERE x.request_id = 'r7'").fetchone()
    assert x["owner"] == "stranger-7" and x["user_id"] is None and x["used"]
    # an upsert attaches too
    world.execute("SELECT reco.upsert_users('[{\"user_id\": \"stranger-8\"}]')")
    assert world.execute("SELECT user_key IS NOT NULL AS k FROM reco.exposures WHERE request_id = 'r8'"
                         ).fetchone()["k"]
    # erasure of an id that never became a user removes what it was shown
    erased = world.execute("SELECT reco.erase_user('stranger-9') AS r").fetchone()["r"]
    assert erased == {"exposures": 1, "users": 0}
    assert not world.execute("SELECT 1 FROM reco.exposures WHERE request_id = 'r9'").fetchone()
    # a deleted user is not re-created by the next read
    world.execute("SELECT reco.erase_user('U1')")
    _serve(world, key, "U1", "after-erasure")
    assert not world.execute("SELECT 1 FROM reco.users WHERE user_id = 'U1'").fetchone()


def test_erasure_takes_a_users_successes_out_of_the_arms_before_any_bandit_run(conn):
    conn.execute("SELECT reco.upsert_features('[{\"feature_id\": \"a\"}, {\"feature_id\": \"b\"}]')")
    conn.execute("SELECT reco.upsert_users('[{\"user_id\": \"U1\"}]')")
    conn.execute("SELECT reco.ingest_events(%s)", (Jsonb([
        {"user_id": "U2", "feature_id": f, "occurred_at": "2026-10-01"} for f in "ab"]),))
    conn.execute("CALL reco.run_job('feature_stats')")  # popularity, so there is something to show
    key = _key(conn)
    body = _serve(conn, key, "U1", "r1")
    now = datetime.now(UTC).isoformat()
    conn.execute("SELECT reco.ingest_events(%s)", (Jsonb([
        {"user_id": "U1", "feature_id": it["feature_id"], "occurred_at": now} for it in body["items"]]),))
    assert not conn.execute("SELECT 1 FROM reco.job_runs WHERE job = 'bandit'").fetchone()
    arms = conn.execute("SELECT sum(alpha - 1) AS s FROM reco.bandit_arms").fetchone()["s"]
    assert arms == len(body["items"]) == 2  # the uses were counted at ingest
    conn.execute("SELECT reco.erase_user('U1')")
    assert conn.execute("SELECT coalesce(sum(alpha - 1), 0) AS s FROM reco.bandit_arms").fetchone()["s"] == 0


def test_plan_reads_daily_counts_not_raw_events(world):
    """/plan answered 503 for a user with 10k events in 30 days: it counted them on every call."""
    world.execute("SELECT reco.upsert_plans('[{\"plan_id\": \"free\", \"price\": 0, \"quota\": 100},"
                  " {\"plan_id\": \"pro\", \"price\": 20}]')")
    now = datetime.now(UTC)
    for lo in range(0, 10_000, 5_000):
        world.execute("SELECT reco.ingest_events(%s)", (Jsonb([
            {"event_id": f"h{i}", "user_id": "U2", "feature_id": "abcd"[i % 4],
             "occurred_at": (now - timedelta(minutes=3 * i)).isoformat()} for i in range(lo, lo + 5_000)]),))
    def event_reads() -> int:  # this backend's scans of the events partitions not yet flushed
        return world.execute("SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) AS n"
                             " FROM pg_stat_xact_user_tables WHERE relname LIKE 'events%'").fetchone()["n"]

    with world.transaction():
        before = event_reads()
        rows = world.execute("SELECT * FROM reco.recommend_plan('U2')").fetchall()
        assert event_reads() == before
    assert rows[0]["reasons"]["monthly_uses"] == 10_000  # all within 30 days (3 min apart: 21 days)
    assert rows[0]["plan_id"] == "pro"


def test_the_same_event_ids_in_another_order_do_not_deadlock(world, db_url):
    import threading

    import psycopg

    errors: list[BaseException] = []
    for attempt in range(4):
        rows = [{"event_id": f"d{attempt}-{i}", "user_id": f"U{i % 7}", "feature_id": "abcd"[i % 4],
                 "occurred_at": "2026-11-01T00:00:00Z"} for i in range(3000)]
        barrier = threading.Barrier(2)

        def send(batch: list[dict], barrier: threading.Barrier = barrier) -> None:
            try:
                with psycopg.connect(db_url, autocommit=True) as c:
                    barrier.wait()
                    c.execute("SELECT reco.ingest_events(%s)", (Jsonb(batch),))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(b,)) for b in (rows, rows[::-1])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    assert world.execute("SELECT count(*) AS n FROM reco.events WHERE event_id LIKE 'd%'").fetchone()["n"] == 12_000


def test_revoking_with_a_short_prefix(conn):
    """`reco keys revoke` with an 8-11 character prefix revoked nothing."""
    keys = [conn.execute("SELECT reco.create_api_key() AS k").fetchone()["k"] for _ in range(2)]
    assert conn.execute("SELECT reco.revoke_api_key(%s) AS n", (keys[0][:10],)).fetchone()["n"] == 1
    revoked = conn.execute("SELECT prefix FROM reco.api_keys WHERE revoked_at IS NOT NULL").fetchall()
    assert [r["prefix"] for r in revoked] == [keys[0][:12]]
    # a start two keys share is refused, not guessed (a second key made to share 10 characters)
    conn.execute("INSERT INTO reco.api_keys (tenant_id, name, prefix, key_hash)"
                 " SELECT tenant_id, 'twin', left(%s, 10) || 'zz', sha256('twin') FROM reco.tenants"
                 " WHERE slug = 'default'", (keys[1],))
    with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
        conn.execute("SELECT reco.revoke_api_key(%s)", (keys[1][:10],))
    assert exc.value.diag.message_hint
    assert conn.execute("SELECT reco.revoke_api_key(%s) AS n", (keys[1],)).fetchone()["n"] == 1  # the whole key


def _catalog(conn) -> None:
    """L1..L30 (created first: the lowest keys, little used) and P1..P40 (P1 most used, each less than
    the one before); user U has used P1..P25."""
    features = [{"feature_id": f"L{i}", "category": "l"} for i in range(1, 31)]
    features += [{"feature_id": f"P{i}", "category": "p"} for i in range(1, 41)]
    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb(features),))
    at = datetime(2026, 11, 1, tzinfo=UTC)
    events = []
    for n in range(1, 51):  # B_n used P1..P_ceil(0.8 n): P_i has 50 - ceil(1.25 i) + 1 users
        events += [{"user_id": f"B{n}", "feature_id": f"P{i}", "occurred_at": (at + timedelta(hours=i)).isoformat()}
                   for i in range(1, -(-4 * n // 5) + 1)]
        events.append({"user_id": f"B{n}", "feature_id": f"L{n % 30 + 1}", "occurred_at": at.isoformat()})
    events += [{"user_id": "U", "feature_id": f"P{i}", "occurred_at": at.isoformat()} for i in range(1, 26)]
    assert conn.execute("SELECT reco.ingest_events(%s) AS r", (Jsonb(events),)).fetchone()["r"]["rejected"] == []
    conn.execute("CALL reco.run_job('all')")


POPULARITY_ONLY = {"itemcf": 0, "usercf": 0, "prior": 0, "popularity": 1, "explore": 0}


def test_excluded_seen_features_do_not_take_the_popularity_candidates(conn):
    """With exclude_seen, the popular features the user already has are not candidates: ranked by
    popularity alone, U (who has P1..P25) gets P26..P35, not the little-used features that reach the
    candidates through co-usage."""
    _catalog(conn)
    got = [r["feature_id"] for r in conn.execute(
        "SELECT feature_id FROM reco.recommend_features('U', 10, %s)",
        (Jsonb({"exclude_seen": True, "explore": False, "weights": POPULARITY_ONLY}),))]
    assert got == [f"P{i}" for i in range(26, 36)]


def test_a_new_user_gets_k_features_when_k_exceeds_the_candidates_setting(conn):
    """The popularity and prior candidate lists hold at least 2·k features (setting candidates is 20):
    a cold-start request for 50 gets 50 (of 70), not 20."""
    _catalog(conn)
    rows = conn.execute("""SELECT feature_id FROM reco.recommend_features('newcomer', 50, '{"explore": false}')"""
                        ).fetchall()
    assert len(rows) == 50 and len({r["feature_id"] for r in rows}) == 50
    assert [r["feature_id"] for r in rows[:3]] == ["P1", "P2", "P3"]
