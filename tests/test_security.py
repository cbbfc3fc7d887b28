"""Roles and row-level security (sql/095_security.sql), against a real server: two tenants with rows in
every table; an analyst role of one sees none of the other's in any table or view (found in the
catalog) and writes nothing; reco_api reads no table and reaches its key's tenant only, whatever it
passes; reco_jobs runs jobs; a role granted nothing gets nothing; every SECURITY DEFINER function pins
its search_path.

Roles are the server's, shared by the tests running concurrently in other databases: each test makes
its own, with a unique name, and drops them."""

from __future__ import annotations

import hashlib

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from app.db import API_ROLE, as_role
from app.migrate import apply_sql
from tests.helpers import connect_as, denied

DAYS = [f"2026-10-{d:02d}T12:00:00Z" for d in range(1, 29)]
A, B = "acme", "globex"


def sha(key: str) -> bytes:
    """What reco.api_keys stores of a key (and what the functions took until issue 24)."""
    return hashlib.sha256(key.encode()).digest()


def seed(conn, slug: str) -> str:
    """A tenant's catalog, users, events, plans, a setting, a scenario, a metric, a running experiment
    and an evaluation; its key. Every id starts with the tenant's first letter."""
    p = slug[0]
    conn.execute("SELECT reco.create_tenant(%s)", (slug,))
    conn.execute("SELECT reco.upsert_features(%s, %s)", (Jsonb(
        [{"feature_id": f"{p}-f{i}", "category": f"c{i % 3}", "embedding": [1.0, float(i), 0.5]}
         for i in range(8)]), slug))
    conn.execute("SELECT reco.upsert_users(%s, %s)", (Jsonb(
        [{"user_id": f"{p}-U{u}", "attributes": {"industry": "retail" if u % 2 else "media"}}
         for u in range(12)]), slug))
    events = [{"event_id": f"{p}-e{u}-{i}", "user_id": f"{p}-U{u}", "feature_id": f"{p}-f{(u + i) % 8}",
               "occurred_at": DAYS[(u + 3 * i) % len(DAYS)], "success": i % 2 == 0}
              for u in range(12) for i in range(4)]
    report = conn.execute("SELECT reco.ingest_events(%s, %s) AS r", (Jsonb(events), slug)).fetchone()["r"]
    assert report["accepted"] == len(events), report
    conn.execute("SELECT reco.upsert_plans(%s, %s)", (Jsonb(
        [{"plan_id": f"{p}-free", "price": 0, "quota": 10}, {"plan_id": f"{p}-pro", "price": 20}]), slug))
    conn.execute("SELECT reco.set_setting('decay_tau_days', '30', %s)", (slug,))
    conn.execute("SELECT reco.upsert_scenario('home', '{\"weight_popularity\": 0.3}', '', %s)", (slug,))
    conn.execute("SELECT reco.create_metric(%s, 'use', 'count', NULL, true, '', %s)", (f"{p}_uses", slug))
    conn.execute("SELECT reco.create_experiment(%s, %s, '{\"scenario\": \"home\"}', %s)", (
        f"{p}-exp", Jsonb([{"name": "control"}, {"name": "b", "overrides": {"weight_usercf": 0.3}}]), slug))
    conn.execute("SELECT reco.start_experiment(%s, %s)", (f"{p}-exp", slug))
    conn.execute("SELECT * FROM reco.evaluate(3, 0, '{}', %s)", (slug,)).fetchall()
    return conn.execute("SELECT reco.create_api_key(%s, 'tests') AS k", (slug,)).fetchone()["k"]


def after_jobs(conn, slug: str, key: str) -> None:
    """What the jobs consume or the evaluation clears, and exposures (their bandit arms follow)."""
    p = slug[0]
    for u in range(6):
        conn.execute("SELECT reco.api_serve(%s, 'recommendations', %s, 3, %s, %s, true, false)",
                     (key, f"{p}-U{u}", Jsonb({"scenario": "home"} if u % 2 else {}), f"{p}-r{u}"))
    conn.execute("INSERT INTO reco.job_queue (tenant_id, job, reason) VALUES (reco._tenant_id(%s), 'tune', 'test')",
                 (slug,))
    conn.execute("""INSERT INTO reco.tune_decisions (tenant, tune, stage, position, kept, fold)
                    SELECT %s, 'test', 'final', 6, max(run_id), 'holdout'
                    FROM reco.evaluation_runs WHERE tenant = %s""",
                 (slug, slug))
    pairs = """SELECT DISTINCT ON (i.user_key) i.tenant_id, i.user_key, i.feature_key, i.first_at
               FROM reco.interactions i WHERE i.tenant_id = reco._tenant_id(%s) ORDER BY i.user_key LIMIT 3"""
    conn.execute(f"INSERT INTO reco.neighbor_weights SELECT tenant_id, feature_key, feature_key, 1 FROM ({pairs}) x",
                 (slug,))
    conn.execute(f"INSERT INTO reco.evaluation_holdouts SELECT * FROM ({pairs}) x", (slug,))
    conn.execute(f"""INSERT INTO reco.evaluation_ranks (tenant_id, model, user_key, hit_rank, items)
                     SELECT tenant_id, 'hybrid', user_key, 1, ARRAY[feature_key] FROM ({pairs}) x""", (slug,))
    run = conn.execute("""INSERT INTO reco.evaluation_runs (tenant, kind, k, users, settings, options, started_at)
                          VALUES (%s, 'tune', 3, 1, '{}', '{"tune": "t", "stage": "s"}', now()) RETURNING run_id""",
                       (slug,)).fetchone()["run_id"]
    conn.execute("""INSERT INTO reco.evaluation_results (run_id, model, users, hit_rate, mrr, ndcg, coverage)
                    VALUES (%s, 'hybrid', 1, 1, 1, 1, 1)""", (run,))
    # a repair of a value stored before the settings' rules (sql/090_setting_repair.sql)
    conn.execute("""INSERT INTO reco.setting_repairs (tenant_id, place, key, stored, repaired, reason)
                    VALUES (reco._tenant_id(%s), 'setting', 'candidates', '50.0', '50', 'normalised')""", (slug,))
    # a churn model with a coefficient row (sql/083_churn_models.sql), its scores, and a retention list with its
    # actions and do-not-contact list (sql/087)
    tid = conn.execute("SELECT reco._tenant_id(%s) AS t", (slug,)).fetchone()["t"]
    conn.execute("SELECT reco._churn_register(%s, 'logistic', '{}', '{recency_days}', '{}', '{\"intercept\": 0}', "
                 "NULL, '[{\"feature\": \"recency_days\", \"mean\": 0, \"scale\": 1, \"coef\": 1}]')", (tid,))
    conn.execute("""INSERT INTO reco.churn_scores (tenant_id, as_of, user_key, model_id, probability, tier)
                    SELECT %s, current_date, user_key,
                           (SELECT max(model_id) FROM reco.models WHERE tenant_id = %s), 0.8, 'high'
                    FROM reco.users WHERE tenant_id = %s""", (tid, tid, tid))
    conn.execute("SELECT reco.set_retention_action('email', 0.01, 0.05, %s)", (slug,))
    conn.execute("SELECT reco.add_do_not_contact(%s, 'test', %s)", (f"{p}-U0", slug))
    conn.execute("SELECT reco.set_setting('retention_holdout', '0', %s)", (slug,))
    conn.execute("SELECT reco.set_setting('retention_value_attribute', '\"value\"', %s)", (slug,))
    conn.execute("UPDATE reco.users SET attributes = attributes || '{\"value\": 50}'"
                 " WHERE tenant_id = reco._tenant_id(%s)", (slug,))
    assert conn.execute("SELECT count(*) AS n FROM reco.retention_list(10, NULL, %s)", (slug,)).fetchone()["n"] > 0


@pytest.fixture
def two(conn):
    """Tenants acme and globex, seeded alike, jobs run: rows of both in every table; conn.keys = {slug: key}."""
    keys = {A: seed(conn, A), B: seed(conn, B)}
    conn.execute("CALL reco.run_job('all')")
    for slug, key in keys.items():
        after_jobs(conn, slug, key)
    conn.execute("CALL reco.run_job('bandit')")
    for slug in keys:  # a budget of its own (reco.tenant_budgets)
        conn.execute("""SELECT reco.set_tenant_budget(%s, '{"events_per_s": 5000}')""", (slug,))
    conn.keys = keys
    return conn


def relations(conn, kinds: str = "rpv") -> list[dict]:
    """The tables and views of schema reco (no partitions, no staging) and their tenant column."""
    return conn.execute("""
        SELECT c.relname, c.relkind,
               CASE WHEN EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id')
                    THEN 'tenant_id'
                    WHEN EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant')
                    THEN 'tenant' END AS col
        FROM pg_class c
        WHERE c.relnamespace = 'reco'::regnamespace AND c.relkind = ANY (%s) AND NOT c.relispartition
          AND c.relname NOT LIKE '\\_%%'
        ORDER BY c.relname""", (list(kinds),)).fetchall()


GLOBAL = {"jobs", "setting_definitions", "setting_catalog", "sql_files"}
SECRET = {"api_keys", "analyst_tenants", "console_sessions"}


# --- the catalog ------------------------------------------------------------------------------------

def test_every_table_is_under_row_level_security_or_global(conn):
    for r in relations(conn, "rp"):
        rls = conn.execute("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s::regclass",
                           (f"reco.{r['relname']}",)).fetchone()
        assert not rls["relforcerowsecurity"], r  # the owner (jobs, definer functions) is not filtered
        if r["relname"] in GLOBAL:
            assert r["col"] is None
            continue
        assert rls["relrowsecurity"], f"reco.{r['relname']} has no row-level security"
        policy = conn.execute("SELECT polname FROM pg_policy"
                              " WHERE polrelid = %s::regclass AND polname LIKE 'analyst%%'",
                              (f"reco.{r['relname']}",)).fetchone()
        if r["relname"] in SECRET:
            assert policy is None
        else:
            # a table without a tenant column must have been given a rule (evaluation_results: by run)
            assert policy, f"reco.{r['relname']} ({r['col'] or 'no tenant column'}) has no analyst policy"
    # nothing for PUBLIC, nothing but EXECUTE for reco_api
    leaks = conn.execute("""
        SELECT c.relname, a.grantee::regrole::text AS grantee, a.privilege_type
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.relnamespace = 'reco'::regnamespace
          AND (a.grantee = 0 OR a.grantee = 'reco_api'::regrole)""").fetchall()
    assert leaks == []


def test_security_definer_functions_pin_search_path(conn):
    definers = conn.execute("""
        SELECT p.oid::regprocedure::text AS fn, p.proconfig FROM pg_proc p
        WHERE p.pronamespace = 'reco'::regnamespace AND p.prosecdef""").fetchall()
    assert len(definers) > 20
    vector = conn.execute("SELECT extnamespace::regnamespace::text AS s FROM pg_extension WHERE extname = 'vector'"
                          ).fetchone()["s"]
    for d in definers:
        path = [c for c in d["proconfig"] or [] if c.startswith("search_path=")]
        assert path, f"{d['fn']} is SECURITY DEFINER without a pinned search_path"
        schemas = [s.strip() for s in path[0].removeprefix("search_path=").split(",")]
        assert schemas[:2] == ["pg_catalog", "reco"] and schemas[-1] == "pg_temp" and '"$user"' not in schemas
        assert vector in schemas
    # and nothing runs as its owner that PUBLIC may call
    public = conn.execute("""SELECT p.oid::regprocedure::text FROM pg_proc p, aclexplode(p.proacl) a
                             WHERE p.pronamespace = 'reco'::regnamespace AND a.grantee = 0""").fetchall()
    assert public == []


def test_reapplying_the_sql_files_changes_nothing(conn, db_url):
    def state():
        return conn.execute("""
            SELECT (SELECT array_agg(x ORDER BY x) FROM (
                        SELECT polrelid::regclass::text || '.' || polname AS x FROM pg_policy) p) AS policies,
                   (SELECT array_agg(x ORDER BY x) FROM (
                        SELECT oid::regprocedure::text || coalesce(proacl::text, '') || prosecdef
                               || coalesce(proconfig::text, '') AS x
                        FROM pg_proc WHERE pronamespace = 'reco'::regnamespace) f) AS functions,
                   (SELECT array_agg(x ORDER BY x) FROM (
                        SELECT oid::regclass::text || coalesce(relacl::text, '') || relrowsecurity
                               || coalesce(reloptions::text, '') AS x
                        FROM pg_class WHERE relnamespace = 'reco'::regnamespace) r) AS relations""").fetchone()

    before = state()
    conn.execute("DELETE FROM reco.sql_files")
    with psycopg.connect(db_url, autocommit=True) as plain:
        assert apply_sql(plain)
    assert state() == before


# --- analysts ---------------------------------------------------------------------------------------

def tenant_scope(conn, slug: str) -> tuple[list[int], list[str]]:
    """A tenant's ids and slugs: itself and its evaluation scopes."""
    rows = conn.execute("""SELECT tenant_id, slug FROM reco.tenants
                           WHERE slug = %s OR evaluation_of = reco._tenant_id(%s)""", (slug, slug)).fetchall()
    return [r["tenant_id"] for r in rows], [r["slug"] for r in rows]


def test_an_analyst_sees_its_tenant_only_in_every_table_and_view(two, db_url, roles):
    alice = roles()
    assert two.execute("SELECT reco.grant_analyst(%s, %s) AS g", (alice, A)).fetchone()["g"] is True
    assert two.execute("SELECT reco.grant_analyst(%s, %s) AS g", (alice, A)).fetchone()["g"] is False
    ids, slugs = tenant_scope(two, A)
    other_ids, _ = tenant_scope(two, B)
    checked = 0
    with connect_as(db_url, alice) as c:
        for r in relations(two):
            name = f"reco.{r['relname']}"
            if r["relname"] in SECRET:
                assert denied(c, f"SELECT 1 FROM {name} LIMIT 1"), name
                continue
            seen = c.execute(f"SELECT count(*) AS n FROM {name}").fetchone()["n"]
            if r["col"] is None:
                if r["relname"] in GLOBAL:
                    assert seen == two.execute(f"SELECT count(*) AS n FROM {name}").fetchone()["n"]
                    continue
                assert r["relname"] == "evaluation_results", f"{name}: no tenant column and no rule in this test"
                mine = two.execute("""SELECT count(*) AS n FROM reco.evaluation_results x JOIN reco.evaluation_runs r
                                      USING (run_id) WHERE r.tenant = ANY (%s)""", (slugs,)).fetchone()["n"]
                assert seen == mine > 0
                checked += 1
                continue
            scope = ids if r["col"] == "tenant_id" else slugs
            mine = two.execute(f"SELECT count(*) AS n FROM {name} WHERE {r['col']} = ANY (%s)", (scope,)
                               ).fetchone()["n"]
            total = two.execute(f"SELECT count(*) AS n FROM {name}").fetchone()["n"]
            assert seen == mine, f"{name}: the analyst sees {seen} rows, its tenant has {mine}"
            assert c.execute(f"SELECT count(*) AS n FROM {name} WHERE NOT ({r['col']} = ANY (%s))",
                             (scope,)).fetchone()["n"] == 0, name
            assert total > mine > 0, f"{name}: the test data leaves it without rows of both tenants"
            checked += 1
        # partitions are read through their table only
        for part in two.execute("""SELECT c.oid::regclass::text AS p FROM pg_class c
                                   WHERE c.relnamespace = 'reco'::regnamespace AND c.relispartition
                                     AND c.relkind IN ('r', 'p')""").fetchall():
            assert denied(c, f"SELECT 1 FROM {part['p']} LIMIT 1"), part["p"]
        # through functions that run with the analyst's rights: the other tenant does not exist
        overview = c.execute("SELECT reco.console_overview(%s) AS o", (A,)).fetchone()["o"]
        assert overview["tenant"] == A
        with pytest.raises(psycopg.errors.NoDataFound):
            c.execute("SELECT reco.console_overview(%s)", (B,))
        assert c.execute("SELECT reco._analyst_tenant_ids(%s) AS t", (alice,)).fetchone()["t"] == sorted(ids)
        assert not set(other_ids) & set(c.execute("SELECT array_agg(tenant_id) AS t FROM reco.tenants").fetchone()["t"])
    assert checked >= 30


def test_an_analyst_writes_nothing(two, db_url, roles):
    alice = roles()
    two.execute("SELECT reco.grant_analyst(%s, %s)", (alice, A))
    with connect_as(db_url, alice) as c:
        for statement in [
            "INSERT INTO reco.plans (tenant_id, plan_id, name, price) VALUES (reco._tenant_id('acme'), 'x', 'x', 1)",
            "UPDATE reco.users SET paid = true",
            "DELETE FROM reco.interactions",
            "TRUNCATE reco.settings",
            "SELECT reco.upsert_users('[{\"user_id\": \"x\"}]', 'acme')",
            "SELECT reco.set_setting('decay_tau_days', '3', 'acme')",
            "SELECT reco.create_api_key('acme')",
            "SELECT reco.grant_analyst(current_user, 'acme')",
            "CREATE TABLE reco.mine (x int)",
            "CALL reco.run_job('bandit', 'acme')",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(statement)
        # and reaches no function that runs with the owner's rights
        for fn in ["reco.api_tenant(%s)", "reco.job_bandit(1)", "reco.tune('acme')"]:
            assert denied(c, f"SELECT {fn}", (two.keys[A],) if "%s" in fn else None), fn
    assert two.execute("SELECT count(*) AS n FROM reco.users WHERE user_id = 'x'").fetchone()["n"] == 0


def test_a_group_grant_reaches_its_members_and_revoke_ends_it(two, db_url, roles):
    group, bob = roles("NOLOGIN"), roles()
    two.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(bob)))
    two.execute("SELECT reco.grant_analyst(%s, %s)", (group, B))
    with connect_as(db_url, bob) as c:
        assert c.execute("SELECT array_agg(DISTINCT slug) AS s FROM reco.tenants WHERE evaluation_of IS NULL"
                         ).fetchone()["s"] == [B]
        assert c.execute("SELECT count(*) AS n FROM reco.users").fetchone()["n"] == 12
    grants = {(r["role_name"], r["tenant"]) for r in two.execute("SELECT * FROM reco.analyst_grants()")}
    assert (group, B) in grants
    assert two.execute("SELECT reco.revoke_analyst(%s, %s) AS n", (group, B)).fetchone()["n"] == 1
    with connect_as(db_url, bob) as c:
        assert denied(c, "SELECT count(*) FROM reco.users")  # out of reco_analyst with its last tenant


def test_roles_that_bypass_row_level_security_cannot_be_analysts(conn, roles):
    for role in ["postgres", API_ROLE, "reco_analyst", roles("LOGIN BYPASSRLS"), roles("SUPERUSER")]:
        with pytest.raises((psycopg.errors.InvalidParameterValue, psycopg.errors.UndefinedObject)):
            conn.execute("SELECT reco.grant_analyst(%s, 'default')", (role,))
    with pytest.raises(psycopg.errors.UndefinedObject):
        conn.execute("SELECT reco.grant_analyst('no_such_role_here', 'default')")


def test_cli_analysts_grant_list_revoke(cli_env, conn, roles):
    from app.cli.security import analysts_app

    carol = roles()
    runner = CliRunner()
    conn.execute("SELECT reco.create_tenant('acme')")
    result = runner.invoke(analysts_app, ["grant", "--tenant", "acme", carol])
    assert result.exit_code == 0, result.output
    assert f"{carol} reads tenant acme" in result.output
    result = runner.invoke(analysts_app, ["list"])
    assert result.exit_code == 0 and carol in result.output and "acme" in result.output
    assert conn.execute("SELECT pg_has_role(%s, 'reco_analyst', 'MEMBER') AS m", (carol,)).fetchone()["m"]
    result = runner.invoke(analysts_app, ["revoke", "--tenant", "acme", carol])
    assert result.exit_code == 0, result.output
    assert not conn.execute("SELECT pg_has_role(%s, 'reco_analyst', 'MEMBER') AS m", (carol,)).fetchone()["m"]
    assert runner.invoke(analysts_app, ["revoke", "--all", carol]).exit_code == 1  # nothing left to revoke


def test_an_analyst_without_a_tenant_is_told_it_sees_none_not_to_create_it(conn, db_url, roles):
    """The default tenant exists but is not the analyst's: the error says the role sees no such
    tenant and names the ones it reads (the owner still gets "unknown tenant ... create it")."""
    dana = roles()
    conn.execute("SELECT reco.create_tenant('acme'), reco.create_tenant('initech')")
    conn.execute("SELECT reco.grant_analyst(%s, 'acme'), reco.grant_analyst(%s, 'initech')", (dana, dana))
    with connect_as(db_url, dana) as c:
        for call in ["SELECT reco.console_overview()", "SELECT reco.console_overview('nosuch')"]:
            with pytest.raises(psycopg.errors.NoDataFound) as exc:
                c.execute(call)
            slug = "default" if "()" in call else "nosuch"
            assert exc.value.diag.message_primary == f'role "{dana}" sees no tenant "{slug}"'
            assert exc.value.diag.message_hint == "It reads 'acme', 'initech': pass one (p_tenant), " \
                                                  "or SET reco.tenant = 'acme'."
        c.execute("SET reco.tenant = 'acme'")
        assert c.execute("SELECT reco.console_overview() AS o").fetchone()["o"]["tenant"] == "acme"
    with pytest.raises(psycopg.errors.NoDataFound) as exc:
        conn.execute("SELECT reco.console_overview('nosuch')")
    assert exc.value.diag.message_primary == 'unknown tenant "nosuch"'
    assert "reco.create_tenant" in exc.value.diag.message_hint


# --- reco_api ---------------------------------------------------------------------------------------

def test_reco_api_reads_no_table(two, db_url):
    with connect_as(db_url, API_ROLE) as c:
        assert c.execute("SELECT current_user AS u").fetchone()["u"] == API_ROLE
        for r in relations(two):
            assert denied(c, f"SELECT 1 FROM reco.{r['relname']} LIMIT 1"), r["relname"]
        assert denied(c, "SELECT 1 FROM public.alembic_version")
        for statement in ["INSERT INTO reco.users (tenant_id, user_id) VALUES (1, 'x')",
                          "DELETE FROM reco.api_keys", "CALL reco.run_job('bandit')"]:
            assert denied(c, statement), statement


def test_reco_api_may_call_only_functions_that_take_a_key(two):
    callable_ = two.execute("""
        SELECT p.proname, p.oid::regprocedure::text AS fn, p.prosecdef, p.proargnames, p.pronargs,
               p.proargtypes[0]::regtype::text AS first
        FROM pg_proc p
        WHERE p.pronamespace = 'reco'::regnamespace
          AND has_function_privilege('reco_api', p.oid, 'EXECUTE')""").fetchall()
    names = {f["proname"] for f in callable_}
    assert {"api_serve", "api_plan", "api_tenant", "api_upsert_users", "api_ingest_events", "api_erase_user",
            "api_create_experiment", "api_experiment_report", "api_popular", "api_readiness"} <= names
    for f in callable_:
        assert f["prosecdef"], f["fn"]
        if f["proname"] in ("api_readiness", "api_job_health", "api_churn_health"):
            assert f["pronargs"] == 0
            continue
        # the credential itself, hashed in the database (a key, or the console's session token)
        assert f["proname"].startswith("api_") and f["first"] == "text", f["fn"]
        assert f["proargnames"][0] in ("p_key", "p_auth", "p_session"), f["fn"]
        assert "p_tenant" not in f["proargnames"], f["fn"]


def test_a_leaked_key_hash_opens_nothing(two, db_url):
    """Issue 24: api_keys.key_hash (a dump, a backup) was all the API functions asked for. Now they
    take the key and hash it themselves: the stored hash, in any spelling, is refused."""
    stored = bytes(two.execute("SELECT key_hash FROM reco.api_keys k JOIN reco.tenants t USING (tenant_id)"
                               " WHERE t.slug = %s", (A,)).fetchone()["key_hash"])
    assert stored == sha(two.keys[A])
    calls = ["SELECT reco.api_tenant(%s)", "SELECT reco.api_popular(%s)", "SELECT reco.api_experiments(%s)",
             "SELECT reco.api_serve(%s, 'recommendations', 'a-U1', 5, '{}', 'r', false, false)",
             "SELECT reco.api_plan(%s, 'a-U1', 'r')", "SELECT reco.api_upsert_users(%s, '[{\"user_id\": \"h\"}]')",
             "SELECT reco.api_console_overview(%s)", "SELECT reco.api_console_session(%s)",
             "SELECT reco.api_console_login(%s, '1 hour', '10 minutes')"]
    with connect_as(db_url, API_ROLE) as c:
        for sql_ in calls:
            assert c.execute(sql_.replace("%s", "%s::text", 1), (two.keys[A],)).fetchone() is not None, sql_
            for leaked in (stored.hex(), "\\x" + stored.hex(), stored.hex().upper()):
                with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification):
                    c.execute(sql_, (leaked,))
            with pytest.raises(psycopg.errors.UndefinedFunction):  # no function takes a hash any more
                c.execute(sql_, (stored,))
    assert two.execute("SELECT count(*) AS n FROM reco.users WHERE user_id = 'h'").fetchone()["n"] == 1  # the key's


def test_reco_api_reaches_its_keys_tenant_only(two, db_url):
    key_a, key_b = two.keys[A], two.keys[B]
    before_b = two.execute("SELECT count(*) AS n FROM reco.users WHERE tenant_id = reco._tenant_id(%s)", (B,)
                           ).fetchone()["n"]
    with connect_as(db_url, API_ROLE) as c:
        # a session setting names the tenant for functions given none: it changes nothing here
        c.execute("SELECT set_config('reco.tenant', %s, false)", (B,))
        assert c.execute("SELECT reco.api_tenant(%s) AS t", (key_a,)).fetchone()["t"] == A
        body = c.execute("SELECT reco.api_serve(%s, 'recommendations', 'a-U1', 5, '{}', 'r', true, false)::json AS b",
                         (key_a,)).fetchone()["b"]
        assert body["items"] and all(i["feature_id"].startswith("a-") for i in body["items"])
        # B's user and feature through A's key: unknown to A (cold start, 404), never B's rows
        body = c.execute("SELECT reco.api_serve(%s, 'recommendations', 'g-U1', 5, '{}', 'r', false, false)::json AS b",
                         (key_a,)).fetchone()["b"]
        assert all(i["feature_id"].startswith("a-") for i in body["items"])
        with pytest.raises(psycopg.errors.NoDataFound):
            c.execute("SELECT reco.api_serve(%s, 'similar', 'g-f1', 5, '{}', 'r', false, false)", (key_a,))
        plans = c.execute("SELECT reco.api_plan(%s, 'g-U1', 'r')::json AS b", (key_a,)).fetchone()["b"]["plans"]
        assert plans and all(p["plan_id"].startswith("a-") for p in plans)
        popular = c.execute("SELECT reco.api_popular(%s)::json AS p", (key_a,)).fetchone()["p"]
        assert popular and all(f.startswith("a-") for f in popular)
        # writes land in A; erasing B's user through A's key finds no such user
        report = c.execute("SELECT reco.api_upsert_users(%s, %s) AS r",
                           (key_a, Jsonb([{"user_id": "g-U1", "paid": True}]))).fetchone()["r"]
        assert report["accepted"] == 1
        with pytest.raises(psycopg.errors.NoDataFound):
            c.execute("SELECT reco.api_erase_user(%s, 'g-U2')", (key_a,))
        assert c.execute("SELECT reco.api_embedding_dimensions(%s) AS d", (key_a,)).fetchone()["d"] == 3
        # experiments: A's only; B's by name is unknown
        listed = c.execute("SELECT reco.api_experiments(%s) AS e", (key_a,)).fetchone()["e"]
        assert [e["name"] for e in listed] == ["a-exp"] and listed[0]["tenant"] == A
        for fn in ["api_experiment", "api_stop_experiment", "api_start_experiment"]:
            with pytest.raises(psycopg.errors.NoDataFound):
                c.execute(f"SELECT reco.{fn}(%s, 'g-exp')", (key_a,))
        rows = c.execute("SELECT count(*) AS n FROM reco.api_experiment_report(%s, 'a-exp')", (key_a,)).fetchone()["n"]
        assert rows > 0
        overview = c.execute("SELECT reco.api_console_overview(%s) AS o", (key_a,)).fetchone()["o"]
        assert overview["tenant"] == A
        # a tenant slug is no way in: the functions that take one are not the API's
        for statement, params in [("SELECT reco.upsert_users('[]', %s)", (B,)),
                                  ("SELECT reco.popular_fallback(%s)", (B,)),
                                  ("SELECT reco.erase_user('g-U1', %s)", (B,)),
                                  ("SELECT reco.recommend_features('g-U1', 5, '{}', %s)", (B,)),
                                  ("SELECT reco.console_overview(%s)", (B,)),
                                  ("SELECT reco._tenant_id(%s)", (B,))]:
            assert denied(c, statement, params), statement
        # invalid key: 28000 before anything is read or written
        with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification):
            c.execute("SELECT reco.api_upsert_users(%s, '[{\"user_id\": \"zz\"}]')", ("pgr_nope",))
        assert c.execute("SELECT reco.api_readiness()->>'schema' AS s").fetchone()["s"]
        assert c.execute("SELECT count(*) AS n FROM reco.api_job_health()").fetchone()["n"] > 0
    # B untouched: its g-U1 still unpaid, the user that A "created" is A's
    assert two.execute("SELECT paid FROM reco.users WHERE tenant_id = reco._tenant_id(%s) AND user_id = 'g-U1'",
                       (B,)).fetchone()["paid"] is False
    assert two.execute("SELECT count(*) AS n FROM reco.users WHERE tenant_id = reco._tenant_id(%s)", (B,)
                       ).fetchone()["n"] == before_b
    assert two.execute("SELECT paid FROM reco.users WHERE tenant_id = reco._tenant_id(%s) AND user_id = 'g-U1'",
                       (A,)).fetchone()["paid"] is True
    assert key_b  # B's key works for B (the same calls, the other way round, are the same code)


# --- reco_jobs, and a role granted nothing -------------------------------------------------------------

def test_reco_jobs_runs_jobs_but_reads_no_tenant_data(two, db_url, roles):
    runner = roles()
    two.execute(sql.SQL("GRANT reco_jobs TO {}").format(sql.Identifier(runner)))
    before = two.execute("SELECT max(run_id) AS r FROM reco.job_runs").fetchone()["r"]
    with connect_as(db_url, runner) as c:
        c.execute("CALL reco.run_job('feature_stats')")
        c.execute("CALL reco.run_job('bandit', %s)", (A,))
        assert denied(c, "SELECT 1 FROM reco.users LIMIT 1")
        assert denied(c, "SELECT 1 FROM reco.api_keys LIMIT 1")
        assert denied(c, "SELECT reco.api_tenant(%s)", (two.keys[A],))
    runs = two.execute("SELECT job, tenant, status FROM reco.job_runs WHERE run_id > %s ORDER BY run_id", (before,)
                       ).fetchall()
    assert {(r["job"], r["tenant"]) for r in runs} >= {("feature_stats", A), ("feature_stats", B), ("bandit", A)}
    assert {r["status"] for r in runs} == {"succeeded"}


def test_a_role_granted_nothing_gets_nothing(two, db_url, roles):
    mallory = roles()
    with connect_as(db_url, mallory) as c:
        for statement, params in [("SELECT 1 FROM reco.users LIMIT 1", None),
                                  ("SELECT 1 FROM reco.experiment_list LIMIT 1", None),
                                  ("SELECT reco.api_tenant(%s)", (two.keys[A],)),
                                  ("SELECT reco.recommend_features('a-U1', 5)", None),
                                  ("CALL reco.run_job('bandit')", None)]:
            assert denied(c, statement, params), statement


def test_the_api_url_connects_as_reco_api(db_url):
    with psycopg.connect(as_role(db_url, API_ROLE)) as c:
        assert c.execute("SELECT current_user").fetchone()[0] == API_ROLE
