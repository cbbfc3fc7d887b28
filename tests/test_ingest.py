"""The SQL ingest functions: good, bad, duplicate and concurrent batches."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

FEATURES = [
    {"feature_id": "cutout", "name": "Background cut-out", "category": "cut-out", "tags": ["ai"]},
    {"feature_id": "batch", "name": "Batch mode", "category": "batch", "requires_paid": True},
    {"feature_id": "legacy", "name": "Legacy export", "category": "export", "active": False},
]


def call(conn, fn: str, batch, tenant: str | None = None) -> dict:
    return conn.execute(f"SELECT reco.{fn}(%s, %s) AS r", (Jsonb(batch), tenant)).fetchone()["r"]


@pytest.fixture
def catalog(conn):
    report = call(conn, "upsert_features", FEATURES)
    assert report == {"accepted": 3, "duplicates": 0, "rejected": []}
    return conn


def test_good_bad_and_retry(catalog):
    conn = catalog
    batch = [
        {"event_id": "e1", "user_id": "U1", "feature_id": "cutout",
         "occurred_at": "2026-10-01T10:00:00Z", "success": True},
        {"event_id": "e2", "user_id": "U2", "feature_id": "batch", "occurred_at": 1759312800},
        {"event_id": "e3", "user_id": "U1", "feature_id": "nope", "occurred_at": "2026-10-01"},
        {"event_id": "e4", "user_id": "U1", "feature_id": "legacy", "occurred_at": "2026-10-01"},
        {"event_id": "e5", "user_id": "U1", "feature_id": "cutout", "occurred_at": "2999-01-01"},
        {"event_id": "e6", "user_id": "U1", "feature_id": "cutout", "occurred_at": "2026-02-30"},
        {"event_id": "e7", "feature_id": "cutout", "occurred_at": "2026-10-01"},
        {"event_id": "e8", "user_id": "U1", "feature_id": "cutout", "occurred_at": "2026-10-01",
         "success": "perhaps"},
        "not an object",
        {"event_id": "e9", "user_id": {"id": 1}, "feature_id": "cutout", "occurred_at": "2026-10-01"},
    ]
    report = call(conn, "ingest_events", batch)
    assert report["accepted"] == 2
    assert report["duplicates"] == 0
    assert [(r["index"], r["field"]) for r in report["rejected"]] == [
        (2, "feature_id"), (3, "feature_id"), (4, "occurred_at"), (5, "occurred_at"),
        (6, "user_id"), (7, "success"), (8, "(row)"), (9, "user_id"),
    ]
    reasons = {r["index"]: r["reason"] for r in report["rejected"]}
    assert "unknown feature" in reasons[2] and "inactive" in reasons[3]
    assert "future" in reasons[4] and "not a time" in reasons[5]

    # the good rows are stored, with a cold user created on the fly
    assert conn.execute("SELECT count(*) AS n FROM reco.events").fetchone()["n"] == 2
    users = [r["user_id"] for r in conn.execute("SELECT user_id FROM reco.users ORDER BY 1")]
    assert users == ["U1", "U2"]

    before = conn.execute("SELECT * FROM reco.interactions ORDER BY user_key").fetchall()
    retry = call(conn, "ingest_events", batch)
    assert retry["accepted"] == 0 and retry["duplicates"] == 2
    assert len(retry["rejected"]) == 8
    after = conn.execute("SELECT * FROM reco.interactions ORDER BY user_key").fetchall()
    assert before == after
    assert conn.execute("SELECT count(*) AS n FROM reco.events").fetchone()["n"] == 2


def test_interaction_weights_follow_decay_and_success(catalog):
    conn = catalog
    # epoch t0 is set from the first batch: the day of its newest event
    report = call(conn, "ingest_events", [
        {"event_id": "a", "user_id": "U1", "feature_id": "cutout", "occurred_at": "2026-10-15T00:00:00Z",
         "success": True},
        {"event_id": "b", "user_id": "U1", "feature_id": "cutout", "occurred_at": "2026-10-01T00:00:00Z",
         "success": False},
        {"event_id": "c", "user_id": "U1", "feature_id": "cutout", "occurred_at": "2026-10-08T00:00:00Z"},
    ])
    assert report["accepted"] == 3
    t0 = conn.execute("SELECT decay_epoch FROM reco.tenants WHERE slug = 'default'").fetchone()
    assert t0["decay_epoch"] == datetime(2026, 10, 15, tzinfo=UTC)
    row = conn.execute("SELECT * FROM reco.interactions").fetchone()
    # tau = 14 days, gamma = 0.2: w = e^0 * 1.2 + e^-1 * 1 + e^-0.5 * 1
    assert row["weight"] == pytest.approx(1.2 + math.exp(-1) + math.exp(-0.5), rel=1e-9)
    assert (row["uses"], row["successes"], row["failures"]) == (3, 1, 1)
    assert row["first_at"] == datetime(2026, 10, 1, tzinfo=UTC)
    assert row["last_at"] == datetime(2026, 10, 15, tzinfo=UTC)

    # a settings change applies to the next events
    conn.execute("SELECT reco.set_setting('success_bonus', '1.0')")
    call(conn, "ingest_events", [{"event_id": "d", "user_id": "U1", "feature_id": "cutout",
                                  "occurred_at": "2026-10-15T00:00:00Z", "success": True}])
    row2 = conn.execute("SELECT weight FROM reco.interactions").fetchone()
    assert row2["weight"] == pytest.approx(row["weight"] + 2.0, rel=1e-9)


def test_events_without_id_are_idempotent_on_content(catalog):
    conn = catalog
    batch = [{"user_id": "U1", "feature_id": "cutout", "occurred_at": "2026-10-01T10:00:00Z"},
             {"user_id": "U1", "feature_id": "cutout", "occurred_at": 1790848800}]  # same instant
    report = call(conn, "ingest_events", batch)
    assert report == {"accepted": 1, "duplicates": 1, "rejected": []}
    assert call(conn, "ingest_events", batch[:1]) == {"accepted": 0, "duplicates": 1, "rejected": []}


def _partitions(conn) -> list[str]:
    return [r["name"] for r in conn.execute(
        """SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'reco.events'::regclass ORDER BY 1""")]


def test_partitions_are_created_as_data_arrives(catalog):
    conn = catalog
    horizon = conn.execute("SELECT reco.partition_horizon() AS h").fetchone()["h"]
    first, later = horizon.strftime("%Y-%m"), (horizon + timedelta(days=150)).strftime("%Y-%m")
    call(conn, "ingest_events", [
        {"event_id": "p1", "user_id": "U1", "feature_id": "cutout", "occurred_at": f"{first}-01T00:00:00Z"},
        {"event_id": "p2", "user_id": "U1", "feature_id": "cutout", "occurred_at": f"{later}-02T00:00:00Z"},
        {"event_id": "p0", "user_id": "U1", "feature_id": "cutout", "occurred_at": "2019-03-01T00:00:00Z"},
    ])
    names = [f"events_{first.replace('-', '_')}", f"events_{later.replace('-', '_')}"]
    assert _partitions(conn) == sorted(["events_default", *names])  # months with data, not the gap
    rows = conn.execute("SELECT tableoid::regclass::text AS part, event_id FROM reco.events ORDER BY 2")
    # older than the horizon (24 months): the default partition
    assert [r["part"] for r in rows] == ["reco.events_default", f"reco.{names[0]}", f"reco.{names[1]}"]


def test_a_client_cannot_create_partitions_by_the_hundred(catalog):
    """682 events one per month from 1970 used to create 680 partitions inside the request."""
    conn = catalog
    events = [{"event_id": f"m{i}", "user_id": "U1", "feature_id": "cutout",
               "occurred_at": f"{1970 + i // 12}-{i % 12 + 1:02d}-15T00:00:00Z"} for i in range(682)]
    report = call(conn, "ingest_events", events)
    too_old = [r for r in report["rejected"] if "max_event_age" in r["reason"]]
    assert too_old and report["accepted"] + len(report["rejected"]) == 682
    assert len(_partitions(conn)) <= 27  # the default one and at most 26 months from the horizon on
    # the tenant may accept older history, still in the default partition
    conn.execute("SELECT reco.set_setting('max_event_age', '\"60 years\"')")
    assert call(conn, "ingest_events", events)["accepted"] == len(too_old)
    assert len(_partitions(conn)) <= 27


def test_bad_batch_shapes_raise_with_hint(conn):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
        conn.execute("SELECT reco.ingest_events('{\"user_id\": \"U1\"}')")
    assert exc.value.diag.message_hint and "JSON array" in exc.value.diag.message_hint
    with pytest.raises(psycopg.errors.NoDataFound) as exc2:
        conn.execute("SELECT reco.ingest_events('[]', 'no-such-tenant')")
    assert "create_tenant" in exc2.value.diag.message_hint


def test_tenants_are_isolated(catalog):
    conn = catalog
    conn.execute("SELECT reco.create_tenant('acme')")
    report = call(conn, "ingest_events", [{"user_id": "U1", "feature_id": "cutout",
                                           "occurred_at": "2026-10-01"}], tenant="acme")
    assert report["rejected"][0]["reason"] == 'unknown feature "cutout"'
    call(conn, "upsert_features", FEATURES[:1], tenant="acme")
    assert call(conn, "ingest_events", [{"user_id": "U1", "feature_id": "cutout",
                                         "occurred_at": "2026-10-01"}], tenant="acme")["accepted"] == 1
    counts = conn.execute("""SELECT t.slug, count(u.*) AS n FROM reco.tenants t
                             LEFT JOIN reco.users u USING (tenant_id) GROUP BY 1 ORDER BY 1""")
    assert {r["slug"]: r["n"] for r in counts} == {"acme": 1, "default": 0}


def test_upsert_users_merges_attributes_and_reports_unchanged(conn):
    first = call(conn, "upsert_users", [
        {"user_id": "U1", "paid": True, "attributes": {"industry": "fashion", "usage_band": "heavy"}},
        {"user_id": "U2"},
        {"user_id": ""},
        {"user_id": "U3", "paid": "sometimes"},
        {"user_id": "U4", "attributes": ["not", "an", "object"]},
    ])
    assert first["accepted"] == 2
    assert [(r["index"], r["field"]) for r in first["rejected"]] == [
        (2, "user_id"), (3, "paid"), (4, "attributes")]
    # same again: nothing changes
    again = call(conn, "upsert_users", [{"user_id": "U1", "paid": True,
                                         "attributes": {"industry": "fashion", "usage_band": "heavy"}}])
    assert again == {"accepted": 0, "duplicates": 1, "rejected": []}
    # merge: given keys overwrite, null removes, others stay; paid left out stays
    call(conn, "upsert_users", [{"user_id": "U1", "attributes": {"usage_band": None, "size": "solo"}}])
    row = conn.execute("SELECT paid, attributes FROM reco.users WHERE user_id = 'U1'").fetchone()
    assert row == {"paid": True, "attributes": {"industry": "fashion", "size": "solo"}}


def test_upsert_features_and_plans(conn):
    report = call(conn, "upsert_features", [
        {"feature_id": "f1", "embedding": [0.1, 0.2]},
        {"feature_id": "f2", "tags": "ai"},
        {"feature_id": "f3", "embedding": [1, "x"]},
        {"feature_id": "f4", "active": "maybe"},
    ])
    assert report["accepted"] == 1
    assert [r["field"] for r in report["rejected"]] == ["tags", "embedding", "active"]
    row = conn.execute("SELECT name, category, active, embedding FROM reco.features").fetchone()
    assert row == {"name": "f1", "category": "general", "active": True,
                   "embedding": [pytest.approx(0.1), pytest.approx(0.2)]}

    plans = [{"plan_id": "free", "price": 0, "quota": 50},
             {"plan_id": "pro", "price": "29.5", "quota": 1000, "overage_price": 0.02,
              "includes_paid_features": True},
             {"plan_id": "bad", "price": -1},
             {"plan_id": "bad2", "price": 5, "quota": 1.5}]
    report = call(conn, "upsert_plans", plans)
    assert report["accepted"] == 2
    assert [(r["index"], r["field"]) for r in report["rejected"]] == [(2, "price"), (3, "quota")]
    assert call(conn, "upsert_plans", plans[:2]) == {"accepted": 0, "duplicates": 2, "rejected": []}


def test_concurrent_batches_on_two_connections(catalog, db_url):
    """Two sessions ingest overlapping batches (same new users, same interaction rows) at once."""
    def batch(offset: int) -> list[dict]:
        return [{"event_id": f"c{offset}-{i}", "user_id": f"U{i % 50}",
                 "feature_id": "cutout" if i % 2 else "batch",
                 "occurred_at": f"2026-10-{1 + i % 28:02d}T12:00:00Z", "success": True}
                for i in range(500)]

    barrier = threading.Barrier(2)
    reports: list[dict] = []
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as c:
                barrier.wait()
                for k in range(3):  # the last round repeats the others' ids: duplicates
                    b = batch(offset + k) if k < 2 else batch(1 - offset)
                    reports.append(c.execute("SELECT reco.ingest_events(%s)", (Jsonb(b),)).fetchone()[0])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(o,)) for o in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # distinct ids: c0-*, c1-*, c2-* (offsets 0,1 / 1,2) -> 3 x 500 events
    assert sum(r["accepted"] for r in reports) == 1500
    assert sum(r["duplicates"] for r in reports) == 1500
    conn = catalog
    assert conn.execute("SELECT count(*) AS n FROM reco.events").fetchone()["n"] == 1500
    assert conn.execute("SELECT count(*) AS n FROM reco.users").fetchone()["n"] == 50
    agg = conn.execute("SELECT sum(uses) AS uses, sum(successes) AS s FROM reco.interactions").fetchone()
    assert agg == {"uses": 1500, "s": 1500}


def test_concurrent_sessions_create_the_same_partition(catalog, db_url):
    """Two sessions ingesting into a month with no partition yet: one creates it, both succeed."""
    horizon = catalog.execute("SELECT reco.partition_horizon() AS h").fetchone()["h"]
    months = [f"{horizon.year + (horizon.month - 1 + i) // 12}-{(horizon.month - 1 + i) % 12 + 1:02d}"
              for i in range(24)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(tag: str) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as c:
                for month in months:
                    barrier.wait()
                    c.execute("SELECT reco.ingest_events(%s)", (Jsonb([
                        {"event_id": f"{tag}-{month}", "user_id": "U1", "feature_id": "cutout",
                         "occurred_at": f"{month}-15T12:00:00Z"}]),))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    conn = catalog
    assert conn.execute("SELECT count(*) AS n FROM reco.events").fetchone()["n"] == 2 * len(months)
    n_parts = conn.execute("SELECT count(*) AS n FROM pg_inherits WHERE inhparent = 'reco.events'::regclass")
    assert n_parts.fetchone()["n"] == len(months) + 1  # and the default partition


def test_an_outlier_first_event_does_not_break_the_decay(catalog):
    """A tenant's first event dated decades back set the decay epoch there: every later event
    weighed e^700 (clamped), and recency was lost. The next batch far ahead rebases first."""
    conn = catalog
    call(conn, "ingest_events", [{"event_id": "old", "user_id": "U1", "feature_id": "cutout",
                                  "occurred_at": "1980-05-01T00:00:00Z"}])
    now = datetime.now(UTC)
    call(conn, "ingest_events", [
        {"event_id": "a", "user_id": "U2", "feature_id": "cutout",
         "occurred_at": (now - timedelta(days=20)).isoformat()},
        {"event_id": "b", "user_id": "U3", "feature_id": "cutout", "occurred_at": now.isoformat()}])
    w = {r["user_id"]: r["weight"] for r in conn.execute(
        "SELECT u.user_id, i.weight FROM reco.interactions i JOIN reco.users u USING (tenant_id, user_key)")}
    assert w["U3"] < math.exp(10) and w["U2"] < w["U3"]  # recent weighs more, on a sane scale
    assert w["U3"] / w["U2"] == pytest.approx(math.exp(20 / 14), rel=1e-6)  # τ 14 days
    assert w["U1"] < 1e-100  # the 1980 use has decayed away
