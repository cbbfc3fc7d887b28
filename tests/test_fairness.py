"""Fairness between tenants (issue 24, item 2): per-tenant budgets of write volume (events and
request bytes a second), statements at once per pool and console pages, each answered 429 with
Retry-After past it while another tenant is served; the defaults from the settings, a tenant's own
budget from reco.tenant_budgets (reco.set_tenant_budget, `reco tenants budget`). Behaviour only: no
test here measures time (the benchmark `reco bench fairness` does)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import psycopg
import pytest
from psycopg.types.json import Jsonb

from app.api.budgets import CONSOLE_BURST, Bucket, Budget, Slots
from app.api.limits import MAX_BATCH
from app.settings import Settings
from jobs.locks import lock_key
from tests.helpers import DAY, client_for, error

#: reco.job_bandit's lock, taken shared by every ingest of a tenant (sql/020_ingest.sql): holding it
#: exclusively from a test connection makes that tenant's writes wait in the database, not the others'
INGEST_LOCK = lock_key("ingest")


@pytest.fixture
def tenants(seeded):
    """The seeded default tenant ("a" below) and a second tenant "big" with the same catalog; a key each."""
    seeded.execute("SELECT reco.create_tenant('big')")
    seeded.execute("SELECT reco.upsert_features(%s, 'big')", (Jsonb([{"feature_id": f} for f in "abcd"]),))
    seeded.big = seeded.execute("SELECT reco.create_api_key('big', 'tests') AS k").fetchone()["k"]
    return seeded


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def events(n: int, prefix: str, user: str = "U1") -> list[dict]:
    return [{"event_id": f"{prefix}{i}", "user_id": user, "feature_id": "abcd"[i % 4], "occurred_at": DAY}
            for i in range(n)]


def stored(conn, prefix: str) -> int:
    return conn.execute("SELECT count(*) AS n FROM reco.event_ids WHERE event_id LIKE %s",
                        (f"{prefix}%",)).fetchone()["n"]


def over_budget(resp, budget: str) -> int:
    """The 429 contract: the error shape, the budget named, Retry-After in whole seconds >= 1."""
    body = error(resp, 429, "over_budget")
    assert "over its budget" in body["message"]
    assert f"RECO_TENANT_{budget.upper()}" in body["hint"]
    seconds = int(resp.headers["retry-after"])
    assert seconds >= 1 and f"Retry after {seconds} s" in body["hint"]
    return seconds


# --- the SQL: reco.set_tenant_budget, reco.tenant_budget, reco.api_tenant_budget ---------------

def test_a_tenants_budget_is_set_merged_and_reset_in_sql(tenants):
    c = tenants
    assert c.execute("SELECT reco.tenant_budget('big') AS b").fetchone()["b"] == {}
    b = c.execute("""SELECT reco.set_tenant_budget('big', '{"events_per_s": 40000, "bytes_per_s": 16e6}') AS b"""
                  ).fetchone()["b"]
    assert b == {"events_per_s": 40000, "bytes_per_s": 16000000}
    # merged: what is not named stays; null goes back to the default
    b = c.execute("""SELECT reco.set_tenant_budget('big', '{"write_statements": 3, "bytes_per_s": null}') AS b"""
                  ).fetchone()["b"]
    assert b == {"events_per_s": 40000, "write_statements": 3}
    row = c.execute("SELECT * FROM reco.tenant_budgets WHERE tenant_id = reco._tenant_id('big')").fetchone()
    assert row["events_per_s"] == 40000 and row["bytes_per_s"] is None and row["write_statements"] == 3
    # the API's view of a key: its tenant and its overrides
    assert c.execute("SELECT reco.api_tenant_budget(%s) AS b", (tenants.big,)).fetchone()["b"] == {
        "tenant": "big", "budget": {"events_per_s": 40000, "write_statements": 3}}
    # everything back to the defaults: no row left
    c.execute("""SELECT reco.set_tenant_budget('big', '{"events_per_s": null, "write_statements": null}')""")
    assert c.execute("SELECT count(*) AS n FROM reco.tenant_budgets").fetchone()["n"] == 0
    # a dropped tenant takes its budget with it
    c.execute("""SELECT reco.set_tenant_budget('big', '{"console_per_s": 0}')""")
    c.execute("SELECT reco.drop_tenant('big')")
    assert c.execute("SELECT count(*) AS n FROM reco.tenant_budgets").fetchone()["n"] == 0


@pytest.mark.parametrize(("budget", "sqlstate", "words"), [
    ('[1]', "22023", "a budget is a JSON object"),
    ('{"events": 5}', "22023", 'unknown budget "events"'),
    ('{"tenant_id": 5}', "22023", 'unknown budget "tenant_id"'),
    ('{"events_per_s": "fast"}', "22023", "must be a number or null"),
    ('{"events_per_s": -1}', "23514", "between 0 and 1e15"),
    ('{"bytes_per_s": 1e300}', "23514", "between 0 and 1e15"),
    ('{"read_statements": 1.5}', "22023", "whole number of statements"),
    ('{"console_statements": 100000}', "22023", "whole number of statements"),
])
def test_a_bad_budget_is_refused_with_a_hint_and_changes_nothing(tenants, budget, sqlstate, words):
    c = tenants
    c.execute("""SELECT reco.set_tenant_budget('big', '{"events_per_s": 7}')""")
    with pytest.raises(psycopg.Error) as info:
        c.execute("SELECT reco.set_tenant_budget('big', %s::jsonb)", (budget,))
    assert info.value.sqlstate == sqlstate and words in info.value.diag.message_primary
    assert "events_per_s, bytes_per_s, read_statements" in info.value.diag.message_hint
    assert c.execute("SELECT reco.tenant_budget('big') AS b").fetchone()["b"] == {"events_per_s": 7}


def test_the_api_role_reads_budgets_by_key_only(tenants, db_url):
    from app.db import as_role

    with psycopg.connect(as_role(db_url, "reco_api"), autocommit=True) as api:
        with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification):
            api.execute("SELECT reco.api_tenant_budget(%s)", ("pgr_not-a-key",))
        for sql in ("SELECT reco.set_tenant_budget('big', '{}')", "SELECT * FROM reco.tenant_budgets"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                api.execute(sql)


# --- the REST API: 429 with Retry-After for the tenant over budget, the other served ----------

def test_a_tenant_over_its_bytes_budget_gets_429_before_its_body_is_read_another_is_served(tenants, db_url):
    # the default: 1 byte a second, a bucket of one largest body (5,000 bytes); "big" has its own: unlimited
    tenants.execute("""SELECT reco.set_tenant_budget('big', '{"bytes_per_s": 0}')""")
    with client_for(db_url, tenant_bytes_per_s=1, api_max_body_bytes=5_000, api_timeout_ms=10_000) as c:
        first = events(40, "bytes-a-")
        assert 3_000 < len(json.dumps(first)) < 5_000
        r = c.post("/v1/events", json=first, headers=bearer(tenants.key))
        assert r.status_code == 200 and r.json()["accepted"] == 40, r.text
        r = c.post("/v1/events", json=events(40, "bytes-b-"), headers=bearer(tenants.key))
        assert over_budget(r, "bytes_per_s") > 1000  # ~4,000 bytes at 1 a second
        assert r.headers["connection"] == "close"  # the rest of the body is not read
        # refused before the body is parsed: not JSON at all, still 429 (not 422)
        r = c.post("/v1/events", content=b"{not json" + b"x" * 4000, headers={**bearer(tenants.key),
                                                                 "Content-Type": "application/json"})
        over_budget(r, "bytes_per_s")
        # the other tenant, with its own budget, is served meanwhile, again and again
        for i in range(3):
            r = c.post("/v1/events", json=events(40, f"bytes-big{i}-"), headers=bearer(tenants.big))
            assert r.status_code == 200 and r.json()["accepted"] == 40, r.text
        # reads are not write volume: the tenant over its bytes budget still reads
        assert c.get("/v1/ping", headers=bearer(tenants.key)).status_code == 200
    assert stored(tenants, "bytes-a-") == 40 and stored(tenants, "bytes-b-") == 0
    assert stored(tenants, "bytes-big") == 120


def test_a_tenant_over_its_events_budget_gets_429_and_nothing_is_stored(tenants, db_url):
    with client_for(db_url, tenant_events_per_s=0.001) as c:
        # a full batch passes on a full bucket (it holds MAX_BATCH events), then the tenant waits it off
        r = c.post("/v1/events", json=events(MAX_BATCH, "ev-a-", user="U9"), headers=bearer(tenants.key))
        assert r.status_code == 200 and r.json()["accepted"] == MAX_BATCH, r.text[:300]
        r = c.post("/v1/events", json=events(1, "ev-b-"), headers=bearer(tenants.key))
        assert over_budget(r, "events_per_s") >= 1
        # known to be over before its body is read (its size at the tenant's bytes per event): not
        # parsed, so not even a body that is no JSON gets its 422
        r = c.post("/v1/events", content=b"[not json", headers={**bearer(tenants.key),
                                                                 "Content-Type": "application/json"})
        over_budget(r, "events_per_s")
        assert r.headers["connection"] == "close"
        r = c.post("/v1/events", json=events(1, "ev-big-"), headers=bearer(tenants.big))
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
        # other writes are not events: the tenant still stores a user
        assert c.put("/v1/users/U1", json={"paid": True}, headers=bearer(tenants.key)).status_code == 200
    assert stored(tenants, "ev-a-") == MAX_BATCH and stored(tenants, "ev-b-") == 0 and stored(tenants, "ev-big-") == 1


def _waiting_on_ingest_lock(conn, deadline: float = 60.0) -> None:
    """Poll until an API backend waits for INGEST_LOCK (generous deadline: an event, not a timing)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if conn.execute("""SELECT count(*) AS n FROM pg_stat_activity
                           WHERE datname = current_database() AND application_name = 'pgreco-api'
                             AND wait_event_type = 'Lock'""").fetchone()["n"]:
            return
        time.sleep(0.02)
    raise AssertionError("the API's write never reached the database")


def test_a_tenant_using_all_its_write_statements_gets_429_another_is_served(tenants, db_url):
    tid = tenants.execute("SELECT reco._tenant_id('default') AS t").fetchone()["t"]
    with client_for(db_url, tenant_write_statements=1, api_pool_timeout=0.2, api_timeout_ms=10_000) as c, \
            psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (INGEST_LOCK, tid))
        first: dict = {}
        thread = threading.Thread(target=lambda: first.update(r=c.post(
            "/v1/events", json=events(1, "slot-a-"), headers=bearer(tenants.key))))
        thread.start()
        try:
            _waiting_on_ingest_lock(tenants)  # tenant a's one write statement is busy in the database
            r = c.post("/v1/events", json=events(1, "slot-b-"), headers=bearer(tenants.key))
            assert over_budget(r, "write_statements") == 1
            r = c.put("/v1/users/U1", json={"paid": True}, headers=bearer(tenants.key))  # any write route
            over_budget(r, "write_statements")
            r = c.post("/v1/events", json=events(1, "slot-big-"), headers=bearer(tenants.big))
            assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
            # reads use the other pool's statements
            assert c.get("/v1/ping", headers=bearer(tenants.key)).status_code == 200
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s, %s)", (INGEST_LOCK, tid))
            thread.join(120)
        assert first["r"].status_code == 200 and first["r"].json()["accepted"] == 1
        # its statement back, the tenant writes again
        r = c.post("/v1/events", json=events(1, "slot-c-"), headers=bearer(tenants.key))
        assert r.status_code == 200, r.text
    assert [stored(tenants, p) for p in ("slot-a-", "slot-b-", "slot-big-", "slot-c-")] == [1, 0, 1, 1]


def test_a_tenants_own_budget_reaches_the_running_api(tenants, db_url):
    with client_for(db_url, tenant_bytes_per_s=1, api_max_body_bytes=5_000, tenant_budget_ttl=0.05) as c:
        body = events(40, "ttl-")
        assert c.post("/v1/events", json=body, headers=bearer(tenants.key)).status_code == 200
        over_budget(c.post("/v1/events", json=body, headers=bearer(tenants.key)), "bytes_per_s")
        tenants.execute("""SELECT reco.set_tenant_budget('default', '{"bytes_per_s": 0}')""")
        deadline = time.monotonic() + 60  # re-read in the background once older than the TTL
        while (r := c.post("/v1/events", json=body, headers=bearer(tenants.key))).status_code == 429:
            assert time.monotonic() < deadline, "the new budget never reached the API"
            time.sleep(0.05)
        assert r.status_code == 200 and r.json()["duplicates"] == 40


def test_requests_without_a_valid_key_are_not_budgeted_they_get_401(tenants, db_url):
    with client_for(db_url, tenant_bytes_per_s=1, api_max_body_bytes=5_000) as c:
        for _ in range(3):
            for headers in ({}, bearer("nope")):
                error(c.post("/v1/events", json=events(40, "nokey-"), headers=headers), 401, "unauthorized")


# --- the console: pages a second per tenant ---------------------------------------------------

def test_a_tenant_over_its_console_budget_gets_429_another_is_served(tenants, db_url):
    with client_for(db_url, tenant_console_per_s=0.001) as c:
        for _ in range(int(CONSOLE_BURST)):  # the bucket: CONSOLE_BURST pages after a quiet spell
            assert c.get("/console", headers=bearer(tenants.key)).status_code == 200
        r = c.get("/console", headers=bearer(tenants.key))
        assert over_budget(r, "console_per_s") > 100  # a page every 1,000 s
        assert c.get("/console/static/console.css", headers=bearer(tenants.key)).status_code == 200
        for _ in range(3):
            r = c.get("/console", headers=bearer(tenants.big))
            assert r.status_code == 200 and "tenant <b>big</b>" in r.text
        # the login form is no page of a tenant
        assert c.get("/console/login").status_code == 200


# --- the pieces -------------------------------------------------------------------------------

def test_a_bucket_lets_a_large_cost_pass_once_then_waits_it_off():
    b = Bucket(size=100, now=0.0)
    assert b.take(250, rate=10, size=100, now=0.0) == 0.0  # a full bucket lets a larger cost through
    assert b.level == -150
    assert b.take(1, rate=10, size=100, now=0.0) == pytest.approx(15.1)  # -150 -> 1 at 10 a second
    assert b.take(1, rate=10, size=100, now=15.1) == 0.0
    b.give_back(1)
    assert b.take(100, rate=10, size=100, now=1000.0) == 0.0  # refills to its size, not more
    assert b.take(1, rate=10, size=100, now=1000.0) == pytest.approx(0.1)


def test_slots_admit_up_to_the_limit_then_queue_in_order_and_time_out():
    async def scenario() -> list:
        slots, order = Slots(), []
        assert await slots.acquire(2, 1) and await slots.acquire(2, 1)
        assert not await slots.acquire(2, 0.01)  # none free: refused after its deadline

        async def waiter(name: str) -> None:
            if await slots.acquire(2, 3600):
                order.append(name)

        tasks = [asyncio.ensure_future(waiter(n)) for n in "xyz"]
        while len(slots.line) < 3:
            await asyncio.sleep(0)
        slots.release(2)
        slots.release(2)
        await asyncio.sleep(0)
        assert order == ["x", "y"] and slots.busy == 2
        tasks[2].cancel()  # a waiter that goes away takes nothing
        await asyncio.gather(tasks[2], return_exceptions=True)
        slots.release(2)
        slots.release(2)
        assert slots.busy == 0
        assert await slots.acquire(0, 0) and slots.busy == 0  # 0: unlimited, nothing counted
        return order

    assert asyncio.run(scenario()) == ["x", "y"]


def test_the_defaults_come_from_the_settings_and_a_tenant_overrides_them():
    s = Settings(tenant_events_per_s=5, tenant_write_statements=3)
    b = Budget.defaults(s)
    assert (b.events_per_s, b.write_statements, b.read_statements) == (5, 3, s.tenant_read_statements)
    own = b.overridden({"events_per_s": 40000, "write_statements": None, "unknown": 1})
    assert (own.events_per_s, own.write_statements) == (40000, 3)
    assert isinstance(own.read_statements, int) and isinstance(own.events_per_s, float)


# --- a large batch is parsed off the event loop -------------------------------------------------

def test_a_large_batch_is_prepared_in_a_worker_process_with_the_same_answers(tenants, db_url):
    import os

    from app.api import offload

    good = {"user_id": "L1", "feature_id": "a", "occurred_at": DAY, "props": {"note": "x" * 100}}
    rows = [{**good, "event_id": f"large-{i}"} for i in range(800)]
    rows[3] = {**good, "user_id": "L\x00"}
    rows[500] = {**good, "feature_id": "nope"}  # the database's rejection, at the request's index
    rows[700] = "not an event"
    raw = json.dumps(rows).encode()
    assert len(raw) > offload.INLINE_BYTES
    here = offload.prepare_events(raw)
    there = asyncio.run(offload.prepare(raw))
    try:
        assert here.pid == os.getpid() and there.pid != os.getpid()  # not on the API's event loop
        assert (there.payload, there.where, there.rejected) == (here.payload, here.where, here.rejected)
    finally:
        offload.shutdown()
    with client_for(db_url) as c:
        report = c.post("/v1/events", content=raw, headers={**bearer(tenants.key),
                                                            "Content-Type": "application/json"}).json()
        assert report["accepted"] == 797 and [(r["index"], r["field"]) for r in report["rejected"]] == [
            (3, "user_id"), (500, "feature_id"), (700, "(row)")]
        # the body as a whole: the same 422s as before, whatever its size
        for body, words in ((b"[" + b" " * 70_000, "not valid JSON"), (b'"a string"', "a list of events"),
                            (json.dumps([good] * (MAX_BATCH + 1)).encode(), "at most 10,000 events")):
            err = error(c.post("/v1/events", content=body, headers={**bearer(tenants.key),
                                                                    "Content-Type": "application/json"}),
                        422, "validation_error")
            assert err["fields"][0]["field"] == "body" and words in err["fields"][0]["reason"], err
    assert stored(tenants, "large-") == 797


def test_the_parsing_worker_ends_with_the_api_process():
    import subprocess
    import sys

    # an API process that starts its worker, learns its pid, and dies without any clean-up
    code = ("import os, asyncio, json\n"
            "from app.api import offload\n"
            "raw = json.dumps([{'user_id': 'u', 'feature_id': 'f', 'props': {'x': 'y' * 100_000}}]).encode()\n"
            "print(asyncio.run(offload.prepare(raw)).pid, flush=True)\n"
            "os._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    worker = int(out.stdout.split()[-1])
    def alive() -> bool:
        try:
            with open(f"/proc/{worker}/status") as fh:
                return "zombie" not in fh.read().lower()
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 60  # the worker looks for its parent every second
    while alive():
        assert time.monotonic() < deadline, "the worker outlived the API process"
        time.sleep(0.2)
