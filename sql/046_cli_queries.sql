-- Status queries the `reco` CLI prints, as documented functions an analyst or a DBA runs from psql too
-- (reco tenants list, reco jobs list, reco keys list, the table counts of reco demo), and a tenant's own
-- pg_cron schedules (reco jobs schedule --tenant T). Each checks its tenant first: an unknown tenant
-- (or, for an analyst, one it does not read) fails with the error and the hint of every other function.

-- ---------------------------------------------------------------------------------------
-- Tenants
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.tenant_overview(p_tenant text DEFAULT NULL, p_scopes boolean DEFAULT false)
RETURNS TABLE (tenant text, tenant_id int, users bigint, features bigint, events bigint, keys bigint,
               created_at timestamptz, evaluation_of text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_tenant IS NOT NULL THEN
        PERFORM reco._tenant_id(p_tenant);  -- an unknown tenant: the error and its hint
    END IF;
    -- keys: NULL for a role that may not read reco.api_keys (an analyst): the rest is still its to read
    RETURN QUERY EXECUTE format(
        $q$SELECT t.slug, t.tenant_id,
                  (SELECT count(*) FROM reco.users u WHERE u.tenant_id = t.tenant_id),
                  (SELECT count(*) FROM reco.features f WHERE f.tenant_id = t.tenant_id),
                  (SELECT count(*) FROM reco.events e WHERE e.tenant_id = t.tenant_id),
                  %s,
                  t.created_at, e.slug
           FROM reco.tenants t LEFT JOIN reco.tenants e ON e.tenant_id = t.evaluation_of
           WHERE ($1 IS NULL OR t.slug = $1) AND ($2 OR t.evaluation_of IS NULL)
           ORDER BY t.tenant_id$q$,
        CASE WHEN has_table_privilege('reco.api_keys', 'SELECT')
             THEN '(SELECT count(*) FROM reco.api_keys k WHERE k.tenant_id = t.tenant_id AND k.revoked_at IS NULL)'
             ELSE 'NULL::bigint' END)
    USING p_tenant, p_scopes;
END $$;
COMMENT ON FUNCTION reco.tenant_overview(text, boolean) IS
$c$the tenants (p_tenant: that one only) with their users, features, events and active API keys (NULL for a role
that may not read reco.api_keys); p_scopes: also the evaluation scopes (the temporary tenants of reco evaluate and
reco tune, with the tenant each evaluates in evaluation_of). What `reco tenants list` prints.
Example: SELECT * FROM reco.tenant_overview();$c$;

CREATE OR REPLACE FUNCTION reco.tenant_row_counts(p_tenant text DEFAULT NULL)
RETURNS TABLE (users bigint, features bigint, plans bigint, events bigint, interactions bigint,
               feature_neighbors bigint, user_vectors bigint)
LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM reco.users WHERE tenant_id = t),
           (SELECT count(*) FROM reco.features WHERE tenant_id = t),
           (SELECT count(*) FROM reco.plans WHERE tenant_id = t),
           (SELECT count(*) FROM reco.events WHERE tenant_id = t),
           (SELECT count(*) FROM reco.interactions WHERE tenant_id = t),
           (SELECT count(*) FROM reco.feature_neighbors WHERE tenant_id = t),
           (SELECT count(*) FROM reco.user_vectors WHERE tenant_id = t)
    FROM reco._tenant_id(p_tenant) AS t
$$;
COMMENT ON FUNCTION reco.tenant_row_counts(text) IS
$c$one row: the tenant's rows in its main tables, the data (users, features, plans, events) and what the jobs made of
it (interactions, feature_neighbors, user_vectors); NULL means the reco.tenant setting, else 'default'. What
`reco demo` prints after loading. Example: SELECT * FROM reco.tenant_row_counts('default');$c$;

-- ---------------------------------------------------------------------------------------
-- Jobs
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.job_overview(p_tenant text DEFAULT NULL)
RETURNS TABLE (job text, tenant text, schedule text, depends_on text[], in_all boolean, status text,
               started_at timestamptz, seconds float8, rows_written bigint, message text,
               waiting_since timestamptz, waiting_for text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    IF p_tenant IS NOT NULL THEN
        PERFORM reco._tenant_id(p_tenant);  -- an unknown tenant: the error and its hint
    END IF;
    RETURN QUERY
    SELECT s.job, s.tenant, s.schedule, s.depends_on, s.in_all, s.status, s.started_at, s.seconds,
           s.rows_written::bigint, s.message, s.waiting_since, s.waiting_for
    FROM reco.job_status s
    WHERE CASE WHEN p_tenant IS NULL THEN NOT s.evaluation_scope ELSE s.tenant = p_tenant END
    ORDER BY s.tenant = 'default' DESC, s.tenant, s.position;
END $$;
COMMENT ON FUNCTION reco.job_overview(text) IS
$c$every job of one tenant (NULL: of every tenant but the evaluation scopes; 'default' first), in the catalog's order:
its schedule, what it depends on, whether 'all' runs it, its latest run (status, start, seconds, rows, message) and
since when the tenant serves a fallback waiting for its Python step (reco.job_status, which has every column).
What `reco jobs list` prints. Example: SELECT job, status, started_at FROM reco.job_overview('default');$c$;

CREATE OR REPLACE FUNCTION reco.schedule_tenant_jobs(p_tenant text)
RETURNS TABLE (jobname text, schedule text, jobid bigint)
LANGUAGE plpgsql AS $$
DECLARE
    _job record;
BEGIN
    PERFORM reco._require_pg_cron();
    PERFORM reco._tenant_id(p_tenant);  -- an unknown tenant: the error and its hint
    FOR _job IN SELECT j.name, j.schedule FROM reco.jobs j ORDER BY j.position LOOP
        jobname := 'pgreco-' || _job.name || '@' || p_tenant;
        schedule := _job.schedule;
        -- cron.schedule with an existing name updates that job: re-running never duplicates
        EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO jobid
            USING jobname, _job.schedule, format('CALL reco.run_job(%L, %L)', _job.name, p_tenant);
        RETURN NEXT;
    END LOOP;
END $$;
COMMENT ON FUNCTION reco.schedule_tenant_jobs(text) IS
$c$register the tenant's own pg_cron jobs, "pgreco-<job>@<tenant>", each running that tenant only on the job's default
schedule (idempotent; change one with cron.alter_job): for a tenant on other schedules than the rest, instead of
the every-tenant jobs of reco.schedule_jobs(). What `reco jobs schedule --tenant T` does.$c$;

CREATE OR REPLACE FUNCTION reco.unschedule_tenant_jobs(p_tenant text)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    _n int := 0;
    _name text;
BEGIN
    PERFORM reco._require_pg_cron();
    PERFORM reco._tenant_id(p_tenant);  -- an unknown tenant: the error and its hint
    FOR _name IN EXECUTE 'SELECT jobname FROM cron.job WHERE jobname LIKE ''pgreco-%'' AND right(jobname, length($1)) = $1'
                 USING '@' || p_tenant LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING _name;
        _n := _n + 1;
    END LOOP;
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco.unschedule_tenant_jobs(text) IS
$c$remove the tenant's own pg_cron jobs ("pgreco-<job>@<tenant>", of reco.schedule_tenant_jobs); returns how many.
What `reco jobs unschedule --tenant T` does.$c$;

-- ---------------------------------------------------------------------------------------
-- API keys
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.list_api_keys(p_tenant text DEFAULT NULL)
RETURNS TABLE (key_id bigint, prefix text, tenant text, name text, created_at timestamptz, revoked_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    IF p_tenant IS NOT NULL THEN
        PERFORM reco._tenant_id(p_tenant);  -- an unknown tenant: the error and its hint
    END IF;
    RETURN QUERY
    SELECT k.key_id, k.prefix, t.slug, k.name, k.created_at, k.revoked_at
    FROM reco.api_keys k JOIN reco.tenants t ON t.tenant_id = k.tenant_id
    WHERE p_tenant IS NULL OR t.slug = p_tenant
    ORDER BY k.key_id;
END $$;
COMMENT ON FUNCTION reco.list_api_keys(text) IS
$c$the API keys (p_tenant: that tenant's; NULL: every tenant's) without their secret: the prefix that names a key in
reco.revoke_api_key, its tenant, name, and when it was created and revoked. For the owner (analysts may not read
reco.api_keys). What `reco keys list` prints. Example: SELECT * FROM reco.list_api_keys() WHERE revoked_at IS NULL;$c$;
