"""The status functions of sql/046_cli_queries.sql (what `reco tenants list`, `reco jobs list`, `reco keys
list` and `reco demo` print), called from SQL as an analyst or a DBA would, and for an analyst role."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from app.db import as_role
from tests.helpers import DAY


def _load(conn, tenant: str, users: int, features: str) -> None:
    conn.execute("SELECT reco.create_tenant(%s)", (tenant,))
    conn.execute("SELECT reco.upsert_features(%s, %s)",
                 (Jsonb([{"feature_id": f, "category": "x"} for f in features]), tenant))
    conn.execute("SELECT reco.ingest_events(%s, %s)", (Jsonb(
        [{"user_id": f"U{u}", "feature_id": f, "occurred_at": DAY} for u in range(users) for f in features[:2]]),
        tenant))


@pytest.fixture
def two(conn):
    """Tenants acme (3 users, 4 features, 6 events, 2 keys of which 1 revoked) and globex (5, 2, 10, 1 key)."""
    _load(conn, "acme", 3, "abcd")
    _load(conn, "globex", 5, "xy")
    keys = [conn.execute("SELECT reco.create_api_key(%s, %s) AS k", (t, n)).fetchone()["k"]
            for t, n in (("acme", "one"), ("acme", "two"), ("globex", "three"))]
    conn.execute("SELECT reco.revoke_api_key(%s)", (keys[1][:12],))
    return conn


def test_tenant_overview_counts_each_tenants_rows(two):
    rows = {r["tenant"]: r for r in two.execute("SELECT * FROM reco.tenant_overview()")}
    assert list(rows) == ["default", "acme", "globex"]  # by tenant_id
    counts = {t: (r["users"], r["features"], r["events"], r["keys"]) for t, r in rows.items()}
    assert counts == {"default": (0, 0, 0, 0), "acme": (3, 4, 6, 1), "globex": (5, 2, 10, 1)}
    (one,) = two.execute("SELECT * FROM reco.tenant_overview('globex')").fetchall()
    assert one["tenant"] == "globex" and one["evaluation_of"] is None
    # an evaluation scope: listed with p_scopes only, with the tenant it evaluates
    two.execute("INSERT INTO reco.tenants (slug, evaluation_of) VALUES ('acme-eval', reco._tenant_id('acme'))")
    assert "acme-eval" not in {r["tenant"] for r in two.execute("SELECT * FROM reco.tenant_overview()")}
    scopes = {r["tenant"]: r["evaluation_of"] for r in two.execute("SELECT * FROM reco.tenant_overview(NULL, true)")}
    assert scopes["acme-eval"] == "acme"


def test_unknown_tenant_fails_with_the_usual_error_and_hint(conn):
    for call in ("reco.tenant_overview(%s)", "reco.tenant_row_counts(%s)", "reco.job_overview(%s)",
                 "reco.list_api_keys(%s)"):
        with pytest.raises(psycopg.errors.NoDataFound) as exc:
            conn.execute(f"SELECT * FROM {call}", ("nosuch",))
        assert 'unknown tenant "nosuch"' in str(exc.value) and "create_tenant" in exc.value.diag.message_hint
        conn.rollback()


def test_tenant_row_counts_are_the_tenants_own(two):
    two.execute("SELECT reco.upsert_plans(%s, 'acme')", (Jsonb([{"plan_id": "free", "price": 0}]),))
    r = two.execute("SELECT * FROM reco.tenant_row_counts('acme')").fetchone()
    assert (r["users"], r["features"], r["plans"], r["events"], r["interactions"]) == (3, 4, 1, 6, 6)
    assert two.execute("SELECT users FROM reco.tenant_row_counts('globex')").fetchone()["users"] == 5
    # NULL: the reco.tenant setting, else 'default'
    assert two.execute("SELECT users FROM reco.tenant_row_counts()").fetchone()["users"] == 0
    two.execute("SET reco.tenant = 'globex'")
    assert two.execute("SELECT events FROM reco.tenant_row_counts()").fetchone()["events"] == 10


def test_job_overview_one_tenant_or_every_tenant_but_scopes(two):
    jobs = [r["name"] for r in two.execute("SELECT name FROM reco.jobs ORDER BY position")]
    first = jobs[0]
    two.execute("CALL reco.run_job(%s, 'acme')", (first,))
    acme = two.execute("SELECT * FROM reco.job_overview('acme')").fetchall()
    assert [r["job"] for r in acme] == jobs and {r["tenant"] for r in acme} == {"acme"}
    ran = {r["job"]: r for r in acme}[first]
    assert ran["status"] == "succeeded" and ran["rows_written"] is not None and ran["started_at"] is not None
    assert all(r["status"] is None for r in acme if r["job"] != first)
    two.execute("INSERT INTO reco.tenants (slug, evaluation_of) VALUES ('acme-eval', reco._tenant_id('acme'))")
    every = two.execute("SELECT tenant, job FROM reco.job_overview()").fetchall()
    assert [r["tenant"] for r in every[::len(jobs)]] == ["default", "acme", "globex"]  # default first
    assert len(every) == 3 * len(jobs)


def test_list_api_keys_without_secrets(two):
    keys = two.execute("SELECT * FROM reco.list_api_keys()").fetchall()
    assert [(k["tenant"], k["name"], k["revoked_at"] is not None) for k in keys] == [
        ("acme", "one", False), ("acme", "two", True), ("globex", "three", False)]
    assert all(len(k["prefix"]) == 12 and "key_hash" not in k for k in keys)
    assert [k["name"] for k in two.execute("SELECT * FROM reco.list_api_keys('globex')")] == ["three"]


def test_schedule_tenant_jobs_needs_pg_cron(conn):
    for call in ("SELECT * FROM reco.schedule_tenant_jobs('default')", "SELECT reco.unschedule_tenant_jobs('default')"):
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="pg_cron is not installed"):
            conn.execute(call)
        conn.rollback()


def test_an_analyst_sees_its_tenant_and_no_key_counts(two, db_url, server_url):
    role = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        two.execute("SELECT reco.grant_analyst(%s, 'acme')", (role,))
        two.commit()
        with psycopg.connect(as_role(db_url, role), autocommit=True, row_factory=dict_row) as c:
            rows = c.execute("SELECT * FROM reco.tenant_overview()").fetchall()
            assert [(r["tenant"], r["users"], r["keys"]) for r in rows] == [("acme", 3, None)]
            assert c.execute("SELECT users FROM reco.tenant_row_counts('acme')").fetchone()["users"] == 3
            assert {r["tenant"] for r in c.execute("SELECT * FROM reco.job_overview()")} == {"acme"}
            with pytest.raises(psycopg.errors.NoDataFound, match="sees no tenant"):
                c.execute("SELECT * FROM reco.tenant_overview('globex')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute("SELECT * FROM reco.list_api_keys()")
    finally:
        two.execute("SELECT reco.revoke_analyst(%s, NULL, true)", (role,))
        two.commit()
        with psycopg.connect(server_url, autocommit=True) as c:
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
