"""Issue 24 item 5: each small hole, with the request or the command that showed it. Real database, real
API (TestClient over the app as `reco serve` builds it), real OS users for the lock file."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from app.embedded import EmbeddedServer
from tests.helpers import DAY, OTHER_USER, client_for, connect_as, denied
from tests.helpers import need_other_user as _need_other_user


@pytest.fixture
def api(seeded, db_url):  # noqa: F811
    with client_for(db_url, api_timeout_ms=5000) as client:  # a loaded machine: no degraded answers here
        client.headers["Authorization"] = f"Bearer {seeded.key}"
        yield client


# --- lone surrogates: refused per row, the rest stored ----------------------------------------------

def test_a_lone_surrogate_is_refused_per_row_not_the_batch(api, seeded):  # noqa: F811
    rows = [{"user_id": "S1", "feature_id": "a", "occurred_at": DAY},
            {"user_id": "S2", "feature_id": "a", "occurred_at": DAY, "props": {"note": "\ud800"}},
            {"user_id": "S\udc00", "feature_id": "a", "occurred_at": DAY},
            {"user_id": "S3", "feature_id": "b", "occurred_at": DAY, "props": {"k\udbff": 1}}]
    # the JSON text escapes them ("\ud800"), as any JSON encoder may
    r = api.post("/v1/events", content=json.dumps(rows), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text  # before: 500 (props) and 422 for the whole batch (user_id)
    report = r.json()
    assert report["accepted"] == 1
    assert [(x["index"], x["field"]) for x in report["rejected"]] == [(1, "props.note"), (2, "user_id"),
                                                                      (3, "props.k\\udbff")]
    assert all("surrogate" in x["reason"] for x in report["rejected"])
    users = {u["user_id"] for u in seeded.execute("SELECT user_id FROM reco.users WHERE user_id LIKE 'S%'")}
    assert users == {"S1"}
    bad = api.put("/v1/users/U1", content=json.dumps({"attributes": {"industry": "\udfff"}}),
                  headers={"Content-Type": "application/json"})
    assert bad.status_code == 422 and "surrogate" in bad.text, bad.text


# --- invalid UTF-8 in path ids: refused, not stored as U+FFFD -------------------------------------

def test_invalid_utf8_in_a_path_id_is_refused(api, seeded):  # noqa: F811
    for raw in ("/v1/users/x%FF", "/v1/users/x%FE"):  # both became "x\ufffd": one id for two byte strings
        r = api.put(raw, json={"paid": True})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["fields"] == [{"field": "path", "reason": "percent-encoded bytes that are not UTF-8"}]
    assert api.get("/v1/users/x%C3/recommendations").status_code == 422
    assert api.get("/v1/users/U1/recommendations?scenario=%FF").status_code == 422
    assert seeded.execute("SELECT count(*) AS n FROM reco.users WHERE user_id LIKE 'x%'").fetchone()["n"] == 0
    assert api.put("/v1/users/x%C3%A9", json={"paid": True}).status_code == 200  # UTF-8: stored as written
    assert seeded.execute("SELECT user_id FROM reco.users WHERE user_id LIKE 'x%'").fetchone()["user_id"] == "xé"


# --- the console's query parameters ----------------------------------------------------------------

def test_console_parameters_never_make_a_5xx(seeded, db_url):  # noqa: F811
    with client_for(db_url) as c:
        huge = "9" * 4301  # int() refuses more than 4,300 digits: it was a 500 before logging in
        for params in ({"id": "a", "days": huge}, {"id": "a", "days": "²"}, {"id": "a\x00b"}):
            r = c.get("/console/feature", params=params, follow_redirects=False)
            assert r.status_code < 500, (params, r.status_code)
        c.headers["Authorization"] = f"Bearer {seeded.key}"
        assert c.get("/console/feature", params={"id": "a", "days": huge}).status_code == 200
        for path, params in (("/console/feature", {"id": "a\x00b"}), ("/console/user", {"id": "\x00"}),
                             ("/console/users", {"start": "U\x00"}), ("/console/features", {"search": "a\x00"}),
                             ("/console/experiment", {"name": "e\x00"})):
            r = c.get(path, params=params)
            assert r.status_code == 400 and "NUL" in r.text, (path, r.status_code)


# --- /metrics: no tenant slugs for strangers --------------------------------------------------------

def test_metrics_name_tenants_only_to_the_authorised_scraper(seeded, db_url):  # noqa: F811
    seeded.execute("SELECT reco.create_tenant('secret-customer')")
    seeded.execute("CALL reco.run_job('feature_stats', 'secret-customer')")
    token = secrets.token_urlsafe(16)
    with client_for(db_url, metrics_token=token) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {seeded.key}"}):
            text = c.get("/metrics", headers=headers).text
            assert "secret-customer" not in text and 'tenant="default"' not in text
            assert 'reco_job_last_success_timestamp_seconds{job="feature_stats",tenant="*"}' in text
        text = c.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text
        assert 'job="feature_stats",tenant="secret-customer"' in text and 'tenant="default"' in text
    with client_for(db_url) as c:  # no token configured: nobody gets the slugs
        assert "secret-customer" not in c.get("/metrics", headers={"Authorization": "Bearer "}).text


# --- trusted hosts ------------------------------------------------------------------------------------

def test_only_trusted_host_headers_are_answered(seeded, db_url):  # noqa: F811
    with client_for(db_url, trusted_hosts="localhost,::1,*.example.com", api_timeout_ms=5000) as c:
        c.headers["Authorization"] = f"Bearer {seeded.key}"
        for host in ("attacker.test", "testserver", "example.com.attacker.test", "localhost.attacker.test", ""):
            r = c.get("/v1/users/U1/recommendations", headers={"Host": host})
            assert r.status_code == 400 and r.json()["error"]["code"] == "untrusted_host", host
            assert c.get("/console/login", headers={"Host": host}).status_code == 400
        for host in ("localhost", "localhost:8000", "[::1]:8000", "api.example.com", "API.Example.com:443"):
            assert c.get("/v1/users/U1/recommendations", headers={"Host": host}).status_code == 200, host


# --- /readyz: no paths for strangers -----------------------------------------------------------------

def test_readyz_does_not_show_where_the_database_is(caplog):
    with client_for("postgresql://postgres@/reco?host=/nonexistent-dir&port=5999", api_pool_timeout=0.2) as c:
        body = c.get("/readyz").json()
    assert body["status"] == "unavailable" and "no such file" in body["reason"].lower(), body
    assert "nonexistent-dir" not in json.dumps(body) and "PGSQL" not in json.dumps(body)
    assert any("/nonexistent-dir/.s.PGSQL.5999" in r.getMessage() for r in caplog.records)  # the operator's log


# --- random keys: a few database trips, then 429 -----------------------------------------------------

def test_random_keys_from_one_address_get_429_not_a_database_trip_each(seeded, db_url):  # noqa: F811
    with client_for(db_url, api_unknown_key_rate=0.001, api_unknown_key_burst=5, api_timeout_ms=5000) as c:
        good = {"Authorization": f"Bearer {seeded.key}"}
        assert c.get("/v1/users/U1/recommendations", headers=good).status_code == 200
        statuses = [c.get("/v1/users/U1/recommendations",
                          headers={"Authorization": f"Bearer pgr_{secrets.token_hex(16)}"}).status_code
                    for _ in range(600)]
        assert statuses.count(401) <= 6 and statuses.count(429) >= 594, {s: statuses.count(s) for s in set(statuses)}
        r = c.get("/v1/users/U1/recommendations", headers={"Authorization": "Bearer pgr_nope"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["code"] == "rate_limited"
        # a key the database confirmed is not slowed by the flood from its address, reads or writes
        assert c.get("/v1/users/U1/recommendations", headers=good).status_code == 200
        assert c.put("/v1/users/U9", json={"paid": False}, headers=good).status_code == 200


# --- reco tenants drop: the slug-keyed history goes too ----------------------------------------------

def test_a_dropped_tenant_leaves_no_run_history_for_a_new_one_of_that_name(conn):
    conn.execute("SELECT reco.create_tenant('gone')")
    conn.execute("CALL reco.run_job('feature_stats', 'gone')")
    conn.execute("INSERT INTO reco.evaluation_runs (tenant, k, users, settings, started_at)"
                 " VALUES ('gone', 10, 1, '{}', now())")
    assert conn.execute("SELECT count(*) AS n FROM reco.job_runs WHERE tenant = 'gone'").fetchone()["n"] >= 1
    conn.execute("SELECT reco.drop_tenant('gone')")
    conn.execute("SELECT reco.create_tenant('gone')")
    assert conn.execute("SELECT count(*) AS n FROM reco.job_runs WHERE tenant = 'gone'").fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM reco.evaluation_runs WHERE tenant = 'gone'").fetchone()["n"] == 0


# --- analysts: no other tenant's statistics ----------------------------------------------------------

def test_an_analyst_reads_no_table_statistics(conn, db_url, roles):  # noqa: F811
    alice = roles()
    conn.execute("SELECT reco.create_tenant('acme')")
    conn.execute("SELECT reco.grant_analyst(%s, 'acme')", (alice,))
    with connect_as(db_url, alice) as c:
        for query in ("SELECT relname, n_live_tup FROM pg_stat_user_tables",
                      "SELECT * FROM pg_stat_all_tables", "SELECT * FROM pg_statio_user_tables",
                      "SELECT * FROM pg_stat_user_indexes", "SELECT * FROM pg_stat_database",
                      "SELECT pg_stat_get_live_tuples('reco.events_default'::regclass)",
                      "SELECT pg_stat_get_tuples_inserted('reco.interactions'::regclass)",
                      "SELECT pg_relation_size('reco.interactions')",
                      "SELECT pg_total_relation_size('reco.users')"):
            assert denied(c, query), query
        # its own tenant's rows are still there to read
        assert c.execute("SELECT count(*) AS n FROM reco.tenants").fetchone()["n"] == 1
    # the owner's jobs still read them (reco._analyze_if_stale)
    assert conn.execute("SELECT count(*) AS n FROM pg_stat_user_tables").fetchone()["n"] > 0


# --- the embedded server's lock file ------------------------------------------------------------------

SYSTEM_PYTHON = "/usr/bin/python3"  # the other user cannot run the virtualenv's (a private checkout)
HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def test_another_local_user_cannot_hold_the_lock_and_a_held_lock_times_out():
    _need_other_user()
    data_dir = Path(tempfile.mkdtemp(prefix="reco-lock-"))
    try:
        data_dir.chmod(0o755)
        lock = data_dir / ".lock"
        lock.touch(0o644)
        lock.chmod(0o644)  # as earlier versions made it
        server = EmbeddedServer(data_dir)
        holder = subprocess.Popen(["runuser", "-u", OTHER_USER, "--", SYSTEM_PYTHON, "-c", HOLD, str(lock)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/")
        try:
            assert holder.stdout.readline().strip() == "held"  # another user holds the old file's lock
            acquired = threading.Event()

            def take() -> None:
                with server._lock():
                    acquired.set()

            t = threading.Thread(target=take, daemon=True)
            t.start()
            assert acquired.wait(120), "the CLI hung on a lock another local user holds"
            t.join(120)
        finally:
            holder.stdin.close()
            holder.wait(30)
        mode = os.stat(lock)
        assert stat.S_IMODE(mode.st_mode) == 0o600 and mode.st_uid == os.geteuid()
        again = subprocess.run(["runuser", "-u", OTHER_USER, "--", SYSTEM_PYTHON, "-c", HOLD, str(lock)],
                               input="", capture_output=True, text=True, cwd="/", timeout=60)
        assert again.returncode != 0 and "PermissionError" in again.stderr
        # held by one of ours (a stuck start): a clear error after the timeout, not a hang
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with pytest.raises(RuntimeError, match="held by another reco command"), server._lock(timeout=0.2):
                pass
        finally:
            os.close(fd)
    finally:
        for p in data_dir.iterdir():
            p.unlink()
        data_dir.rmdir()


def test_settings_validation_errors_keep_valid_rows(conn):
    """Bad input loses nothing valid: a refused override leaves the stored scenario as it was."""
    conn.execute("SELECT reco.upsert_scenario('home', '{\"mmr_lambda\": 0.5}')")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT reco.upsert_scenario('home', %s)", (Jsonb({"mmr_lambda": 0.7, "candidates": 1e9}),))
    assert conn.execute("SELECT overrides FROM reco.scenarios").fetchone()["overrides"] == {"mmr_lambda": 0.5}
