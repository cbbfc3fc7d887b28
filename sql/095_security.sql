-- Roles, privileges and row-level security. Applied after every other sql/ file and re-applied
-- with them (whenever any changed), so the rules below reach every function, table and view those
-- files define by reading the catalog: a new function or table is covered without being listed.
--
-- Who connects as what
--   owner         the role that runs `reco migrate` (owns schema reco and everything in it): the CLI,
--                 imports, `reco jobs`, pg_cron's jobs. As the tables' owner it bypasses row-level
--                 security (no FORCE), so the serving path costs nothing extra.
--   reco_api      LOGIN, no table access. The REST API. It may execute the reco.api_* functions whose
--                 first parameter is p_key (the bearer key itself, hashed in the database: a copy of
--                 api_keys.key_hash opens nothing), p_auth (the console's: a console session token or
--                 a key) or p_session (a console session token), and two credential-less ones for
--                 /readyz and /metrics (api_readiness, api_job_health). They are SECURITY DEFINER:
--                 each finds the tenant itself (reco._api_key, reco._console_auth), and none takes a
--                 tenant slug, so a key reaches its own tenant only. The tenant functions the REST
--                 layer calls (upsert_users(..., p_tenant) and the like) are reached through the generated
--                 wrappers of sql/094_api_wrappers.sql, reco.api_<name>(p_key, <the same parameters but p_tenant>), the console's
--                 pages through reco.api_console_<page>(p_auth, ...).
--   reco_analyst  NOLOGIN group. SELECT on the documented tables and views (not api_keys, not
--                 analyst_tenants), EXECUTE on the functions that run with the caller's rights;
--                 row-level security shows a member the rows of the tenants mapped to it, or to a
--                 role it is a member of, in reco.analyst_tenants (and their evaluation scopes).
--                 `reco analysts grant --tenant T ROLE` = SELECT reco.grant_analyst('ROLE', 'T').
--   reco_jobs     NOLOGIN group: CALL reco.run_job(...) and SELECT reco.tune(...) for every tenant.
--                 The job bodies, reco.tune, fail_orphaned_job_runs and _analyze_if_stale are
--                 SECURITY DEFINER; run_job itself (it commits, so it cannot be) runs with the
--                 caller's rights on the run log (jobs, tenants, job_runs, job_queue). The numpy steps
--                 of `reco jobs run` read the tables from Python: they need the owner.
--
-- Every SECURITY DEFINER function has a pinned search_path (pg_catalog, reco, the schema of the
-- vector extension, pg_temp). No role but the owner has any privilege the rules below do not give:
-- they are revoked from PUBLIC and from the three roles first, then granted again, in this one
-- transaction. Policies are created only when missing (CREATE POLICY locks its table): change a
-- policy's expression → change the version suffix of its name.

-- ---------------------------------------------------------------------------------------
-- Roles (cluster-wide: created once, by the first database migrated on the server)
-- ---------------------------------------------------------------------------------------

DO $$
DECLARE
    _role text;
    _how text;
BEGIN
    FOREACH _role IN ARRAY '{reco_api,reco_analyst,reco_jobs}'::text[] LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = _role);
        _how := CASE _role WHEN 'reco_api' THEN 'LOGIN' ELSE 'NOLOGIN' END;
        BEGIN
            EXECUTE format('CREATE ROLE %I %s', _role, _how);
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by the migration of another database on the server
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role % does not exist and % may not create roles', _role, current_user
                    USING ERRCODE = 'insufficient_privilege',
                          HINT = format('Have an administrator run CREATE ROLE %I %s; (or give %I CREATEROLE), '
                                        'then run reco migrate again.', _role, _how, current_user);
        END;
    END LOOP;
END $$;

-- ---------------------------------------------------------------------------------------
-- Analysts: the tenants a role reads (reco.analyst_tenants, migration 0014)
-- ---------------------------------------------------------------------------------------

-- The tenants p_role reads: mapped to it or to a role it is a member of, and their evaluation
-- scopes. Called by the policies with current_user; answers only for roles the session may be.
CREATE OR REPLACE FUNCTION reco._analyst_tenant_ids(p_role name)
RETURNS int[]
LANGUAGE sql STABLE AS $$
    WITH mapped AS (
        SELECT a.tenant_id
        FROM reco.analyst_tenants a
        JOIN pg_catalog.pg_roles r ON r.rolname = a.role_name
        WHERE pg_catalog.pg_has_role(session_user, p_role, 'MEMBER')
          AND pg_catalog.pg_has_role(p_role, r.oid, 'MEMBER'))
    SELECT coalesce(array_agg(t.tenant_id ORDER BY t.tenant_id), '{}')
    FROM reco.tenants t
    WHERE t.tenant_id IN (SELECT tenant_id FROM mapped) OR t.evaluation_of IN (SELECT tenant_id FROM mapped)
$$;
COMMENT ON FUNCTION reco._analyst_tenant_ids(name) IS
    'internal (row-level security): the tenant ids an analyst role reads (reco.analyst_tenants, role membership, evaluation scopes)';

CREATE OR REPLACE FUNCTION reco._analyst_tenant_slugs(p_role name)
RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(t.slug ORDER BY t.slug), '{}')
    FROM reco.tenants t WHERE t.tenant_id = ANY (reco._analyst_tenant_ids(p_role))
$$;
COMMENT ON FUNCTION reco._analyst_tenant_slugs(name) IS
    'internal (row-level security): the tenant slugs an analyst role reads, for the tables keyed by slug (job_runs, evaluation_runs)';

CREATE OR REPLACE FUNCTION reco.grant_analyst(p_role text, p_tenant text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _r record;
    _new int;
BEGIN
    SELECT * INTO _r FROM pg_roles WHERE rolname = p_role;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role "%" does not exist', p_role
            USING ERRCODE = 'undefined_object',
                  HINT = format('Create the login first, e.g. CREATE ROLE %I LOGIN PASSWORD ''...'';', p_role);
    END IF;
    IF _r.rolsuper OR _r.rolbypassrls OR p_role IN ('reco_api', 'reco_analyst', 'reco_jobs')
       OR pg_has_role(p_role, (SELECT nspowner FROM pg_namespace WHERE nspname = 'reco'), 'MEMBER') THEN
        RAISE EXCEPTION 'role "%" cannot be an analyst of one tenant', p_role
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'It bypasses row-level security (a superuser, BYPASSRLS, the owner of schema reco or a '
                         'member of it) or is one of pgreco''s roles: give the analyst a role of its own.';
    END IF;
    IF (SELECT evaluation_of FROM reco.tenants WHERE tenant_id = _tid) IS NOT NULL THEN
        RAISE EXCEPTION 'tenant "%" is an evaluation scope', p_tenant
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Grant the tenant it was made from: its analysts see its scopes.';
    END IF;
    IF NOT pg_has_role(p_role, 'reco_analyst', 'MEMBER') THEN
        EXECUTE format('GRANT reco_analyst TO %I', p_role);
    END IF;
    INSERT INTO reco.analyst_tenants (tenant_id, role_name) VALUES (_tid, p_role)
    ON CONFLICT ON CONSTRAINT analyst_tenants_pkey DO NOTHING;
    GET DIAGNOSTICS _new = ROW_COUNT;
    RETURN _new > 0;
END $$;
COMMENT ON FUNCTION reco.grant_analyst(text, text) IS
$c$let a database role read one tenant: the role becomes a member of reco_analyst (SELECT on the documented tables
and views) and row-level security shows it that tenant's rows (and those of any other tenant granted to it or to a
role it is a member of). Returns false when it was granted already. The role must exist and must not bypass
row-level security. Example: CREATE ROLE alice LOGIN PASSWORD '...'; SELECT reco.grant_analyst('alice', 'acme');$c$;

CREATE OR REPLACE FUNCTION reco.revoke_analyst(p_role text, p_tenant text DEFAULT NULL, p_all boolean DEFAULT false)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    _n int;
BEGIN
    DELETE FROM reco.analyst_tenants
    WHERE role_name = p_role AND (p_all OR tenant_id = reco._tenant_id(p_tenant));
    GET DIAGNOSTICS _n = ROW_COUNT;
    -- nothing left to read here: out of the group too (the membership is the server's, see the comment)
    IF NOT EXISTS (SELECT 1 FROM reco.analyst_tenants WHERE role_name = p_role)
       AND EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
                   WHERE m.roleid = 'reco_analyst'::regrole AND r.rolname = p_role) THEN
        EXECUTE format('REVOKE reco_analyst FROM %I', p_role);
    END IF;
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco.revoke_analyst(text, text, boolean) IS
$c$stop a role reading a tenant (p_all: every tenant); returns the grants removed. A role left with no tenant in this
database leaves the reco_analyst group as well; role membership is the server's, so on a server holding several
pgreco databases, grant it again in the others. Example: SELECT reco.revoke_analyst('alice', 'acme');$c$;

CREATE OR REPLACE FUNCTION reco.analyst_grants()
RETURNS TABLE (role_name name, tenant text, granted_at timestamptz, in_group boolean, can_login boolean)
LANGUAGE sql STABLE AS $$
    SELECT a.role_name, t.slug, a.granted_at,
           coalesce(pg_has_role(r.oid, 'reco_analyst', 'MEMBER'), false), r.rolcanlogin
    FROM reco.analyst_tenants a
    JOIN reco.tenants t ON t.tenant_id = a.tenant_id
    LEFT JOIN pg_roles r ON r.rolname = a.role_name
    UNION ALL
    SELECT r.rolname, NULL, NULL, true, r.rolcanlogin
    FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
    WHERE m.roleid = 'reco_analyst'::regrole
      AND NOT EXISTS (SELECT 1 FROM reco.analyst_tenants a WHERE a.role_name = r.rolname)
    ORDER BY 1, 2
$$;
COMMENT ON FUNCTION reco.analyst_grants() IS
    'the analyst roles: each role and tenant it reads, whether it is in the reco_analyst group and can log in; members of the group without a tenant here are listed with tenant NULL';

-- ---------------------------------------------------------------------------------------
-- The REST API's entry points that are not a tenant function with the key in front (those are
-- written out in sql/094_api_wrappers.sql): each authenticates the key first.
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.api_embedding_dimensions(p_key text)
RETURNS int
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _tid int := (reco._api_key(p_key)).tenant_id;
BEGIN
    RETURN (SELECT cardinality(f.embedding) FROM reco.features f
            WHERE f.tenant_id = _tid AND f.embedding IS NOT NULL LIMIT 1);
END $$;
COMMENT ON FUNCTION reco.api_embedding_dimensions(text) IS
    'the length of the client vectors of the key''s tenant (the first one stored sets it), NULL before any';

CREATE OR REPLACE FUNCTION reco.api_popular(p_key text, p_k int DEFAULT 100)
RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT reco.popular_fallback((reco._api_key(p_key)).slug, p_k)
$$;
COMMENT ON FUNCTION reco.api_popular(text, int) IS
    'reco.popular_fallback for the key''s tenant: the list the API serves, degraded, when the database is slow or down';

CREATE OR REPLACE FUNCTION reco.api_experiments(p_key text)
RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _slug text := (reco._api_key(p_key)).slug;
BEGIN
    RETURN (SELECT coalesce(json_agg(row_to_json(e) ORDER BY e.name), '[]')
            FROM reco.experiment_list e WHERE e.tenant = _slug);
END $$;
COMMENT ON FUNCTION reco.api_experiments(text) IS
    'the key''s tenant''s experiments: the rows of reco.experiment_list as a JSON array (GET /v1/experiments)';

CREATE OR REPLACE FUNCTION reco.api_experiment(p_key text, p_name text)
RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _slug text := (reco._api_key(p_key)).slug;
BEGIN
    PERFORM reco._experiment(p_name, _slug);  -- unknown: no_data_found
    RETURN (SELECT row_to_json(e) FROM reco.experiment_list e WHERE e.tenant = _slug AND e.name = p_name);
END $$;
COMMENT ON FUNCTION reco.api_experiment(text, text) IS
    'one experiment of the key''s tenant: its row of reco.experiment_list as JSON; unknown: no_data_found (GET /v1/experiments/{name})';

CREATE OR REPLACE FUNCTION reco.api_readiness()
RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _schema text;
BEGIN
    IF to_regclass('public.alembic_version') IS NOT NULL THEN
        SELECT version_num INTO _schema FROM public.alembic_version LIMIT 1;
    END IF;
    RETURN json_build_object('schema', _schema,
                             'sql_files', (SELECT coalesce(json_object_agg(filename, checksum), '{}')
                                           FROM reco.sql_files));
END $$;
COMMENT ON FUNCTION reco.api_readiness() IS
    'what /readyz compares with the code: {"schema": the Alembic revision, "sql_files": {file: checksum}}';

-- its columns grew (waiting_since): CREATE OR REPLACE cannot change a function's result type
DROP FUNCTION IF EXISTS reco.api_job_health();
CREATE FUNCTION reco.api_job_health()
RETURNS TABLE (job text, tenant text, last_success float8, failed_24h int, last_failed boolean, waiting_since float8)
LANGUAGE sql STABLE AS $$
    SELECT j.name, t.slug, extract(epoch FROM s.finished_at)::float8, coalesce(f.n, 0)::int, l.status = 'failed',
           extract(epoch FROM q.requested_at)::float8
    FROM reco.jobs j
    CROSS JOIN reco.tenants t
    LEFT JOIN reco.job_queue q ON q.tenant_id = t.tenant_id AND q.job = j.name
    JOIN LATERAL (SELECT r.status FROM reco.job_runs r
                  WHERE r.job = j.name AND r.tenant = t.slug AND r.status IN ('succeeded', 'failed', 'deferred')
                    AND r.started_at > now() - interval '30 days'
                  ORDER BY r.started_at DESC LIMIT 1) AS l ON true
    LEFT JOIN LATERAL (SELECT r.finished_at FROM reco.job_runs r
                       WHERE r.job = j.name AND r.tenant = t.slug AND r.status = 'succeeded'
                         AND r.started_at > now() - interval '30 days'
                       ORDER BY r.started_at DESC LIMIT 1) AS s ON true
    LEFT JOIN LATERAL (SELECT count(*) AS n FROM reco.job_runs r
                       WHERE r.job = j.name AND r.tenant = t.slug AND r.status = 'failed'
                         AND r.started_at > now() - interval '24 hours') AS f ON true
    WHERE t.evaluation_of IS NULL
    ORDER BY 1, 2
$$;
COMMENT ON FUNCTION reco.api_job_health() IS
$c$per job and tenant that ran it in the last 30 days: the end of the last success (epoch seconds, NULL: none), the
failed runs in the last 24 hours, whether the last finished run failed, since when its Python step waits for
`reco jobs loop` while the tenant serves a fallback (epoch seconds, NULL: nothing waits; reco.job_status) (/metrics)$c$;

-- ---------------------------------------------------------------------------------------
-- Privileges: none for PUBLIC; the rules, for the three roles
-- ---------------------------------------------------------------------------------------

REVOKE ALL ON SCHEMA reco FROM PUBLIC;
GRANT USAGE ON SCHEMA reco TO reco_api, reco_analyst, reco_jobs;
REVOKE ALL ON ALL TABLES IN SCHEMA reco FROM PUBLIC, reco_api, reco_analyst, reco_jobs;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA reco FROM PUBLIC, reco_api, reco_analyst, reco_jobs;
REVOKE ALL ON ALL ROUTINES IN SCHEMA reco FROM PUBLIC, reco_api, reco_analyst, reco_jobs;

DO $priv$
DECLARE
    _vector text := (SELECT e.extnamespace::regnamespace::text FROM pg_extension e WHERE e.extname = 'vector');
    _path text;
    _f record;
BEGIN
    _path := concat_ws(', ', 'pg_catalog', 'reco',
                       CASE WHEN _vector NOT IN ('pg_catalog', 'reco') THEN _vector END, 'pg_temp');
    FOR _f IN
        SELECT p.oid::regprocedure AS fn, p.prokind, p.prosecdef,
               CASE
                   -- the REST API and the console: a credential first, or the two operations functions
                   WHEN p.proname LIKE 'api\_%' AND p.pronargs >= 1 AND p.proargtypes[0] = 'text'::regtype
                        AND p.proargnames[1] IN ('p_key', 'p_auth', 'p_session') THEN 'api'
                   WHEN p.proname IN ('api_readiness', 'api_job_health', 'api_churn_health') AND p.pronargs = 0 THEN 'api'
                   -- the jobs: their bodies (reco.jobs.procedure) and what run_job calls with the owner's rights
                   WHEN 'reco.' || p.proname IN (SELECT j.procedure FROM reco.jobs j)
                        OR p.proname IN ('tune', 'fail_orphaned_job_runs', '_analyze_if_stale') THEN 'jobs'
                   -- (run_job takes its lock by name: reco.lock_key)
                   WHEN p.proname IN ('run_job', '_tenant_id', 'lock_key') THEN 'jobs_invoker'
                   -- the policies' helpers
                   WHEN p.proname IN ('_analyst_tenant_ids', '_analyst_tenant_slugs') THEN 'policy'
               END AS rule
        FROM pg_proc p
        WHERE p.pronamespace = 'reco'::regnamespace AND p.prokind IN ('f', 'p')
    LOOP
        IF _f.rule IN ('api', 'jobs', 'policy') THEN
            EXECUTE format('ALTER ROUTINE %s SECURITY DEFINER', _f.fn);
            EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO %I', _f.fn,
                           CASE _f.rule WHEN 'api' THEN 'reco_api' WHEN 'jobs' THEN 'reco_jobs' ELSE 'reco_analyst' END);
        ELSIF _f.rule = 'jobs_invoker' THEN
            EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO reco_jobs', _f.fn);
        END IF;
        -- analysts: every function that runs with the caller's rights (row-level security applies to
        -- what it reads; it cannot write: analysts may not), e.g. the console's pages
        IF _f.prokind = 'f' AND _f.rule IS DISTINCT FROM 'api' AND _f.rule IS DISTINCT FROM 'jobs'
           AND NOT _f.prosecdef THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO reco_analyst', _f.fn);
        END IF;
    END LOOP;
    -- every SECURITY DEFINER routine of the schema runs with a pinned search_path
    FOR _f IN
        SELECT p.oid::regprocedure AS fn FROM pg_proc p
        WHERE p.pronamespace = 'reco'::regnamespace AND p.prosecdef
          AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c WHERE c LIKE 'search\_path=%')
    LOOP
        EXECUTE format('ALTER ROUTINE %s SET search_path = %s', _f.fn, _path);
    END LOOP;
    IF _vector = 'public' AND has_schema_privilege('public', 'public', 'CREATE') THEN
        RAISE WARNING 'every role may create objects in schema public, which the SECURITY DEFINER functions search (pgvector is there)'
            USING HINT = 'REVOKE CREATE ON SCHEMA public FROM PUBLIC; (the default since PostgreSQL 15)';
    END IF;
END $priv$;

-- ---------------------------------------------------------------------------------------
-- Row-level security: every table of the schema (partitions through their parent; staging
-- tables "_..." have no grants at all). Analysts read their tenants' rows; reco_jobs reads and
-- writes the run log of every tenant.
-- ---------------------------------------------------------------------------------------

DO $rls$
DECLARE
    _global text[] := '{jobs,setting_definitions,sql_files}';  -- no tenant in them: readable whole
    _secret text[] := '{api_keys,analyst_tenants,console_sessions}';  -- not for analysts
    _t record;
    _using text;
    _p record;
BEGIN
    FOR _t IN
        SELECT c.oid, c.oid::regclass AS rel, c.relname, c.relrowsecurity,
               EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
                                                      AND NOT a.attisdropped) AS by_id,
               EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant'
                                                      AND NOT a.attisdropped) AS by_slug
        FROM pg_class c
        WHERE c.relnamespace = 'reco'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND c.relname NOT LIKE '\_%'
        ORDER BY c.relname
    LOOP
        IF _t.relname = ANY (_global) THEN
            EXECUTE format('GRANT SELECT ON %s TO reco_analyst', _t.rel);
            CONTINUE;
        END IF;
        IF NOT _t.relrowsecurity THEN
            EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', _t.rel);
        END IF;
        _using := CASE
            WHEN _t.relname = ANY (_secret) THEN NULL
            WHEN _t.by_id THEN 'tenant_id = ANY ((SELECT reco._analyst_tenant_ids(current_user))::int[])'
            WHEN _t.by_slug THEN 'tenant = ANY ((SELECT reco._analyst_tenant_slugs(current_user))::text[])'
            WHEN _t.relname = 'evaluation_results' THEN 'run_id IN (SELECT r.run_id FROM reco.evaluation_runs r)'
        END;  -- NULL: no policy, no grant (a new table without a tenant column stays closed)
        FOR _p IN SELECT polname FROM pg_policy
                  WHERE polrelid = _t.oid AND polname LIKE 'analyst\_read%'
                    AND (_using IS NULL OR polname <> 'analyst_read_v1') LOOP
            EXECUTE format('DROP POLICY %I ON %s', _p.polname, _t.rel);
        END LOOP;
        IF _using IS NOT NULL THEN
            IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = _t.oid AND polname = 'analyst_read_v1') THEN
                EXECUTE format('CREATE POLICY analyst_read_v1 ON %s FOR SELECT TO reco_analyst USING (%s)',
                               _t.rel, _using);
            END IF;
            EXECUTE format('GRANT SELECT ON %s TO reco_analyst', _t.rel);
        END IF;
    END LOOP;

    -- reco_jobs: what CALL reco.run_job touches with the caller's rights
    GRANT SELECT ON reco.jobs, reco.tenants TO reco_jobs;
    GRANT SELECT, INSERT, UPDATE ON reco.job_runs TO reco_jobs;
    GRANT SELECT, DELETE ON reco.job_queue TO reco_jobs;
    EXECUTE format('GRANT USAGE ON SEQUENCE %s TO reco_jobs', pg_get_serial_sequence('reco.job_runs', 'run_id'));
    FOR _t IN SELECT c.oid, c.oid::regclass AS rel, c.relname FROM pg_class c
              WHERE c.oid IN ('reco.tenants'::regclass, 'reco.job_runs'::regclass, 'reco.job_queue'::regclass) LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = _t.oid AND polname = 'jobs_v1') THEN
            EXECUTE format('CREATE POLICY jobs_v1 ON %s FOR %s TO reco_jobs USING (true)%s', _t.rel,
                           CASE WHEN _t.relname = 'tenants' THEN 'SELECT' ELSE 'ALL' END,
                           CASE WHEN _t.relname = 'tenants' THEN '' ELSE ' WITH CHECK (true)' END);
        END IF;
    END LOOP;
END $rls$;

-- ---------------------------------------------------------------------------------------
-- Views: row-level security of their tables applies to whoever reads them (PostgreSQL 15+).
-- CREATE OR REPLACE VIEW resets the option, so it is set again each time.
-- ---------------------------------------------------------------------------------------

DO $views$
DECLARE
    _v regclass;
BEGIN
    FOR _v IN SELECT c.oid::regclass FROM pg_class c
              WHERE c.relnamespace = 'reco'::regnamespace AND c.relkind = 'v' ORDER BY c.relname LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_class c, unnest(c.reloptions) AS o
                       WHERE c.oid = _v AND o = 'security_invoker=true') THEN
            EXECUTE format('ALTER VIEW %s SET (security_invoker = true)', _v);
        END IF;
        EXECUTE format('GRANT SELECT ON %s TO reco_analyst', _v);
    END LOOP;
END $views$;
