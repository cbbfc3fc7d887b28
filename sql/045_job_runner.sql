-- The job runner and pg_cron: reco.run_job (advisory lock, run log, commit per run) runs the
-- job bodies of sql/040_job_bodies.sql by their catalog entry (below); reco.schedule_jobs registers them with pg_cron.

-- ---------------------------------------------------------------------------------------
-- The job catalog: every job, its body, default schedule and dependencies
-- ---------------------------------------------------------------------------------------

-- the engine's jobs (bodies in sql/040_job_bodies.sql)
INSERT INTO reco.jobs (name, procedure, schedule, depends_on, position, description) VALUES
    ('maintenance', 'reco.job_maintenance', '7 3 * * *', '{}', 1,
     'rebase the decay epoch of interaction weights; create the next months'' event partitions'),
    ('feature_stats', 'reco.job_feature_stats', '*/15 * * * *', '{}', 2,
     'popularity and success rate per feature, globally and per segment'),
    ('cohort_priors', 'reco.job_cohort_priors', '*/15 * * * *', '{feature_stats}', 3,
     'P(feature | attribute = value), Laplace-smoothed, for the segment attributes'),
    ('feature_neighbors', 'reco.job_feature_neighbors', '*/30 * * * *', '{}', 4,
     'the neighbour model (setting neighbor_model: cosine, rp3beta or ease): each feature''s K most similar features; content embeddings and content neighbours for little-used features'),
    ('embeddings', 'reco.job_embeddings', '*/30 * * * *', '{feature_neighbors}', 5,
     'feature factors (SVD of R above 64 features, numpy), user vectors (HNSW) and every user''s UserCF from its nearest users'),
    ('bandit', 'reco.job_bandit', '*/10 * * * *', '{}', 6,
     'rebuild the Thompson-sampling counters from exposures and the uses that followed them')
ON CONFLICT (name) DO UPDATE
    SET procedure = excluded.procedure, schedule = excluded.schedule,
        depends_on = excluded.depends_on, position = excluded.position,
        description = excluded.description;

-- offline evaluation (sql/060_evaluation.sql)
INSERT INTO reco.jobs (name, procedure, schedule, depends_on, position, description, in_all) VALUES
    ('evaluate', 'reco.job_evaluate', '30 4 * * 0', '{}', 100,
     'offline evaluation (leave-one-out by time) of the hybrid, each component and a popularity baseline; stored in reco.evaluation_runs',
     false)
ON CONFLICT (name) DO UPDATE
    SET procedure = excluded.procedure, schedule = excluded.schedule,
        depends_on = excluded.depends_on, position = excluded.position,
        description = excluded.description, in_all = excluded.in_all;

-- self-tuning (sql/065_tune.sql)
INSERT INTO reco.jobs (name, procedure, schedule, depends_on, position, description, in_all) VALUES
    ('tune', 'reco.job_tune', '30 5 * * 0', '{}', 101,
     'search neighbour model, K, τ, weights, seen handling and MMR λ on a holdout of the tenant''s data; apply the best when it beats the current settings by more than the noise (EASE only from Python: queued for `reco jobs loop`)',
     false)
ON CONFLICT (name) DO UPDATE
    SET procedure = excluded.procedure, schedule = excluded.schedule,
        depends_on = excluded.depends_on, position = excluded.position,
        description = excluded.description, in_all = excluded.in_all;

-- ---------------------------------------------------------------------------------------
-- run_job: lock, log, run, commit
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.fail_orphaned_job_runs()
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    _n int;
BEGIN
    -- A run's backend is alive while a session with its pid and start time exists. A session of
    -- another role whose start time this role may not read (NULL without pg_read_all_stats) counts
    -- as alive: better a run shown running a while longer than a live run shown failed.
    -- Runs logged before backends were recorded (backend_pid NULL) are dead if they started
    -- before the server did.
    UPDATE reco.job_runs r
    SET status = 'failed', finished_at = now(),
        message = format('the backend running this job ended (killed or crashed) at or before %s', now())
    WHERE r.status = 'running'
      AND CASE WHEN r.backend_pid IS NULL THEN r.started_at < pg_postmaster_start_time()
               ELSE NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                                WHERE a.pid = r.backend_pid
                                  AND (a.backend_start = r.backend_start OR a.backend_start IS NULL))
          END;
    GET DIAGNOSTICS _n = ROW_COUNT;
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco.fail_orphaned_job_runs() IS
$c$mark as failed the job runs logged 'running' whose backend is gone (terminated, killed by the OOM killer,
server crash): no session with the recorded backend_pid and backend_start. Returns how many it marked.
Called by reco.run_job and `reco jobs list`.$c$;

CREATE OR REPLACE FUNCTION reco._analyze_if_stale(p_table regclass)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    _tuples float4;
    _changed bigint;
    _live bigint;
    _stale boolean;
BEGIN
    -- a partitioned table has no statistics counters of its own: its partitions' are summed
    -- (pg_partition_tree gives no row for a plain table: then the table itself)
    SELECT sum(s.n_mod_since_analyze), sum(c.reltuples) FILTER (WHERE c.reltuples > 0),
           coalesce(sum(s.n_live_tup), 0)
    INTO _changed, _tuples, _live
    FROM (SELECT t.relid FROM pg_partition_tree(p_table) t WHERE t.isleaf
          UNION
          SELECT p_table WHERE (SELECT relkind FROM pg_class WHERE oid = p_table) <> 'p') AS leaf
    JOIN pg_class c ON c.oid = leaf.relid
    LEFT JOIN pg_stat_user_tables s ON s.relid = leaf.relid;
    _changed := coalesce(_changed, 0);
    IF coalesce(_tuples, 0) <= 0 THEN
        -- never analysed (reltuples -1) or analysed empty: stale as soon as it has rows
        _stale := _changed > 0 OR _live > 0;
    ELSE
        _stale := _changed > 0.1 * _tuples;
    END IF;
    IF _stale THEN
        -- SKIP_LOCKED: a table being analysed or vacuumed right now is left to that run
        EXECUTE format('ANALYZE (SKIP_LOCKED) %s', p_table);
    END IF;
    RETURN _stale;
END $$;
COMMENT ON FUNCTION reco._analyze_if_stale(regclass) IS
$c$ANALYZE a table when its statistics are stale: rows changed since the last analyse
(pg_stat_user_tables.n_mod_since_analyze) above 10 % of reltuples, or never analysed / analysed empty
and now holding rows. Returns whether it analysed. reco.run_job calls it before each job body for the
tables the jobs read, so a job after a burst of ingests is not planned on statistics of an empty table.$c$;

CREATE OR REPLACE PROCEDURE reco.run_job(p_job text, p_tenant text DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    _job record;
    _tenant record;
    _run bigint;
    _rows bigint;
    _err text;
    _failed text[] := '{}';
BEGIN
    PERFORM reco.fail_orphaned_job_runs();
    IF p_job = 'all' THEN
        FOR _job IN SELECT name FROM reco.jobs WHERE in_all ORDER BY position LOOP
            CALL reco.run_job(_job.name, p_tenant);
        END LOOP;
        RETURN;
    END IF;
    SELECT * INTO _job FROM reco.jobs WHERE name = p_job;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown job "%"', p_job
            USING ERRCODE = 'no_data_found',
                  HINT = 'SELECT name, description FROM reco.jobs; lists the jobs; ''all'' runs them in order.';
    END IF;
    FOR _tenant IN
        SELECT tenant_id, slug FROM reco.tenants
        WHERE (p_tenant IS NULL AND evaluation_of IS NULL) OR tenant_id = reco._tenant_id(p_tenant)
        ORDER BY tenant_id
    LOOP
        -- one run per job and tenant at a time; a concurrent second run is logged as skipped
        IF NOT pg_try_advisory_lock(reco.lock_key('job'), hashtext(p_job || ':' || _tenant.tenant_id)) THEN
            INSERT INTO reco.job_runs (job, tenant, status, message, finished_at)
            VALUES (p_job, _tenant.slug, 'skipped', 'another run of this job is in progress',
                    clock_timestamp());
            COMMIT;
            CONTINUE;
        END IF;
        INSERT INTO reco.job_runs (job, tenant, status, backend_pid, backend_start)
        SELECT p_job, _tenant.slug, 'running', pg_backend_pid(), a.backend_start
        FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()
        RETURNING run_id INTO _run;
        COMMIT;
        -- the jobs read these: fresh statistics first (after a burst of ingests the planner would
        -- otherwise see the empty tables of its last analyse and nest loops over millions of rows);
        -- committed at once, so the tables' ANALYZE lock is not held through the job
        PERFORM reco._analyze_if_stale('reco.interactions'), reco._analyze_if_stale('reco.users'),
                reco._analyze_if_stale('reco.features');
        COMMIT;
        _err := NULL;
        -- a job body may report: reco.job_message (what it did), reco.job_status 'deferred'
        -- (part of its work left in reco.job_queue for `reco jobs loop`, see reco._defer); reco.job_run
        -- tells a body that this run is logged here (reco.tune, called directly, logs its own run)
        PERFORM set_config('reco.job_status', '', true), set_config('reco.job_message', '', true),
                set_config('reco.job_run', _run::text, true);
        BEGIN
            EXECUTE format('SELECT %s($1)', _job.procedure) INTO _rows USING _tenant.tenant_id;
        EXCEPTION WHEN OTHERS THEN
            _err := SQLERRM;
        END;
        UPDATE reco.job_runs
        SET status = CASE WHEN _err IS NOT NULL THEN 'failed'
                          WHEN current_setting('reco.job_status', true) = 'deferred' THEN 'deferred'
                          ELSE 'succeeded' END,
            rows_written = _rows, finished_at = clock_timestamp(),
            message = coalesce(_err, nullif(current_setting('reco.job_message', true), ''))
        WHERE run_id = _run;
        IF _err IS NULL AND coalesce(current_setting('reco.job_status', true), '') <> 'deferred' THEN
            -- done in full: nothing of this job is left for the loop
            DELETE FROM reco.job_queue WHERE tenant_id = _tenant.tenant_id AND job = p_job;
        END IF;
        PERFORM pg_advisory_unlock(reco.lock_key('job'), hashtext(p_job || ':' || _tenant.tenant_id));
        COMMIT;
        IF _err IS NOT NULL THEN
            _failed := _failed || format('%s (%s): %s', p_job, _tenant.slug, _err);
        END IF;
    END LOOP;
    IF cardinality(_failed) > 0 THEN
        RAISE EXCEPTION 'job failed: %', array_to_string(_failed, '; ')
            USING ERRCODE = 'external_routine_exception',
                  HINT = 'SELECT * FROM reco.job_runs ORDER BY run_id DESC; shows the run log.';
    END IF;
END $$;
COMMENT ON PROCEDURE reco.run_job(text, text) IS
$c$run a job ('all' = every job in dependency order) for one tenant or, with p_tenant NULL, for every
tenant. Guarded by an advisory lock (a concurrent second run is logged as skipped), logged to reco.job_runs.
Call it outside a transaction block: it commits after each run. Example: CALL reco.run_job('feature_neighbors');$c$;

-- ---------------------------------------------------------------------------------------
-- Status: what a DBA reads (reco jobs list, the console's overview, /metrics)
-- ---------------------------------------------------------------------------------------

-- A job whose run left its Python step (EASE, SVD) in reco.job_queue keeps serving a fallback (the
-- neighbours of the last full run, a random projection or older factors for the user vectors)
-- until `reco jobs loop` computes it: waiting_since and waiting_for say so, next to the last run.
CREATE OR REPLACE VIEW reco.job_status AS
SELECT t.slug AS tenant, j.name AS job, j.schedule, j.depends_on, j.in_all, j.position, j.description,
       l.status, l.started_at, l.finished_at,
       extract(epoch FROM coalesce(l.finished_at, clock_timestamp()) - l.started_at)::float8 AS seconds,
       l.rows_written, l.message, s.finished_at AS last_success_at,
       q.requested_at AS waiting_since, q.reason AS waiting_for,
       t.evaluation_of IS NOT NULL AS evaluation_scope
FROM reco.tenants t
CROSS JOIN reco.jobs j
-- a run logged for tenant 'all' (a numpy step that failed for every tenant) counts for each
LEFT JOIN LATERAL (SELECT r.* FROM reco.job_runs r WHERE r.job = j.name AND r.tenant IN (t.slug, 'all')
                   ORDER BY r.run_id DESC LIMIT 1) AS l ON true
LEFT JOIN LATERAL (SELECT r.finished_at FROM reco.job_runs r
                   WHERE r.job = j.name AND r.tenant IN (t.slug, 'all') AND r.status = 'succeeded'
                   ORDER BY r.run_id DESC LIMIT 1) AS s ON true
LEFT JOIN reco.job_queue q ON q.tenant_id = t.tenant_id AND q.job = j.name;
COMMENT ON VIEW reco.job_status IS
$c$every job of every tenant: its schedule, its latest run (status, start, end, seconds, rows, message), its latest
success, and waiting_since / waiting_for: since when the tenant serves a fallback because the job's Python step
(EASE neighbours, SVD factors, the tune's EASE trials) waits for `reco jobs loop` (reco.job_queue; NULL: nothing
waits). Example: SELECT tenant, job, waiting_since, waiting_for FROM reco.job_status WHERE waiting_since IS NOT NULL;$c$;

-- ---------------------------------------------------------------------------------------
-- pg_cron
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._require_pg_cron()
RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database %', current_database()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this '
                         'database and CREATE EXTENSION pg_cron; or keep the tables fresh with `reco jobs loop`.';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION reco.schedule_jobs()
RETURNS TABLE (jobname text, schedule text, jobid bigint)
LANGUAGE plpgsql AS $$
DECLARE
    _job record;
BEGIN
    PERFORM reco._require_pg_cron();
    FOR _job IN SELECT * FROM reco.jobs ORDER BY position LOOP
        jobname := 'pgreco-' || _job.name;
        schedule := _job.schedule;
        -- cron.schedule with an existing name updates that job: re-running never duplicates
        EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO jobid
            USING jobname, _job.schedule, format('CALL reco.run_job(%L)', _job.name);
        RETURN NEXT;
    END LOOP;
END $$;
COMMENT ON FUNCTION reco.schedule_jobs() IS
    'register every job of reco.jobs with pg_cron as "pgreco-<job>" on its default schedule (idempotent)';

CREATE OR REPLACE FUNCTION reco.unschedule_jobs()
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    _n int := 0;
    _name text;
BEGIN
    PERFORM reco._require_pg_cron();
    FOR _name IN EXECUTE 'SELECT jobname FROM cron.job WHERE jobname LIKE ''pgreco-%''' LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING _name;
        _n := _n + 1;
    END LOOP;
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco.unschedule_jobs() IS 'remove every pgreco job from pg_cron; returns how many';

CREATE OR REPLACE FUNCTION reco.scheduled_jobs()
RETURNS TABLE (jobname text, schedule text, command text, active boolean)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM reco._require_pg_cron();
    RETURN QUERY EXECUTE
        'SELECT jobname::text, schedule::text, command::text, active FROM cron.job
         WHERE jobname LIKE ''pgreco-%'' ORDER BY jobname';
END $$;
COMMENT ON FUNCTION reco.scheduled_jobs() IS 'the pgreco jobs registered with pg_cron';
