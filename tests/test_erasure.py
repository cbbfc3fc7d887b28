"""Erasure (reco.erase_user) against ingest running at the same time, on two connections.

Issue 24: an event sent while its user was being erased was answered {"accepted": 0, "duplicates": 1},
was not stored, and its id stayed in reco.event_ids, so that every retry was a "duplicate" too. The
interleaving is forced, not hoped for: the erasure's transaction stays open until the event's
ingest is seen waiting for it (pg_stat_activity), then commits."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

RUNS = 20
HISTORY = 30
#: generous: only a broken server takes this long to show a waiting backend
DEADLINE_S = 120.0


def _ingest(conn, events: list[dict]) -> dict:
    return conn.cursor(row_factory=tuple_row).execute("SELECT reco.ingest_events(%s)", (Jsonb(events),)).fetchone()[0]


def _event(event_id: str, user: str, day: int) -> dict:
    return {"event_id": event_id, "user_id": user, "feature_id": "cutout" if day % 2 else "batch",
            "occurred_at": f"2026-10-{1 + day % 28:02d}T12:00:00Z"}


def _start(fn, *args) -> tuple[threading.Thread, list]:
    """fn(*args) in a thread; its result (or the exception it raised) lands in the list."""
    out: list = []

    def run() -> None:
        try:
            out.append(fn(*args))
        except BaseException as exc:  # reported by the test
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def _wait_until_waiting(watch: psycopg.Connection, pid: int, thread: threading.Thread) -> None:
    """Poll until backend ``pid`` waits for a lock (or its thread ended: it did not wait)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline and thread.is_alive():
        row = watch.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.01)  # polling interval, not synchronisation: the condition is checked
    pytest.fail("the ingest never waited for the erasure's transaction")


@pytest.fixture
def catalog(conn):
    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb([
        {"feature_id": "cutout", "category": "cut-out"}, {"feature_id": "batch", "category": "batch"}]),))
    return conn


def test_an_event_sent_during_the_erasure_is_stored_for_a_new_user(catalog, db_url):
    lost = []
    with psycopg.connect(db_url, autocommit=True) as watch, \
            psycopg.connect(db_url, autocommit=True) as ingester:
        pid = ingester.info.backend_pid
        for run in range(RUNS):
            user = f"U{run}"
            _ingest(watch, [_event(f"h{run}-{i}", user, i) for i in range(HISTORY)])
            eraser = psycopg.connect(db_url)  # a transaction, left open until the event waits
            try:
                erased = eraser.execute("SELECT reco.erase_user(%s)", (user,)).fetchone()[0]
                assert erased["events"] == HISTORY
                fresh = _event(f"new-{run}", user, run)
                thread, report = _start(_ingest, ingester, [fresh])
                _wait_until_waiting(watch, pid, thread)
                eraser.commit()
                thread.join()
            finally:
                eraser.close()
            stored = watch.execute("SELECT count(*) FROM reco.events e JOIN reco.users u USING (tenant_id, user_key)"
                                   " WHERE e.event_id = %s AND u.user_id = %s", (fresh["event_id"], user)).fetchone()[0]
            if report != [{"accepted": 1, "duplicates": 0, "rejected": []}] or stored != 1:
                lost.append((run, report, stored))
            # the erased history is gone; the new event alone is the user's
            left = watch.execute("SELECT count(*) FROM reco.events e JOIN reco.users u USING (tenant_id, user_key)"
                                 " WHERE u.user_id = %s", (user,)).fetchone()[0]
            assert left == stored
            # a retry is a duplicate of a stored event, not of a lost one
            assert _ingest(watch, [fresh])["duplicates"] == 1
    assert not lost, f"{len(lost)} of {RUNS} events sent during an erasure were lost: {lost[:3]}"
    ids = catalog.execute("SELECT count(*) AS n FROM reco.event_ids i WHERE NOT EXISTS"
                          " (SELECT 1 FROM reco.events e WHERE e.tenant_id = i.tenant_id"
                          " AND e.event_id = i.event_id)").fetchone()["n"]
    assert ids == 0  # no id kept for an event that is not stored


def test_an_ingest_in_flight_finishes_before_the_erasure_erases_it(catalog, db_url):
    """The other order: the ingest's transaction is open (it holds its lock) when the erasure starts;
    the erasure waits for it and erases the events it stored, their ids too."""
    _ingest(catalog, [_event(f"h-{i}", "U1", i) for i in range(HISTORY)])
    with psycopg.connect(db_url, autocommit=True) as watch, psycopg.connect(db_url, autocommit=True) as eraser:
        pid = eraser.info.backend_pid
        ingester = psycopg.connect(db_url)
        try:
            assert _ingest(ingester, [_event("late", "U1", 3)])["accepted"] == 1
            thread, result = _start(lambda: eraser.execute("SELECT reco.erase_user('U1')").fetchone()[0])
            _wait_until_waiting(watch, pid, thread)
            ingester.commit()
            thread.join()
        finally:
            ingester.close()
    assert result[0]["events"] == HISTORY + 1 and result[0]["event_ids"] == HISTORY + 1
    assert catalog.execute("SELECT count(*) AS n FROM reco.users WHERE user_id = 'U1'").fetchone()["n"] == 0
    assert catalog.execute("SELECT count(*) AS n FROM reco.event_ids").fetchone()["n"] == 0
