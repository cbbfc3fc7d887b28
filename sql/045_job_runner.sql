-- The job runner and pg_cron: reco.run_job (advisory lock, run log, commit per run) runs the
-- job bodies of sql/040_jobs.sql by their catalog entry; reco.schedule_jobs registers them with pg_cron.

-- ---------------------------------------------------------------------------------------
-- run_job: lock, log, run, commit
-- ---------------------------------------------------------------------------------------

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
        IF NOT pg_try_advisory_lock(7281100, hashtext(p_job || ':' || _tenant.tenant_id)) THEN
            INSERT INTO reco.job_runs (job, tenant, status, message, finished_at)
            VALUES (p_job, _tenant.slug, 'skipped', 'another run of this job is in progress',
                    clock_timestamp());
            COMMIT;
            CONTINUE;
        END IF;
        INSERT INTO reco.job_runs (job, tenant, status) VALUES (p_job, _tenant.slug, 'running')
        RETURNING run_id INTO _run;
        COMMIT;
        _err := NULL;
        BEGIN
            EXECUTE format('SELECT %s($1)', _job.procedure) INTO _rows USING _tenant.tenant_id;
        EXCEPTION WHEN OTHERS THEN
            _err := SQLERRM;
        END;
        UPDATE reco.job_runs
        SET status = CASE WHEN _err IS NULL THEN 'succeeded' ELSE 'failed' END,
            rows_written = _rows, message = _err, finished_at = clock_timestamp()
        WHERE run_id = _run;
        PERFORM pg_advisory_unlock(7281100, hashtext(p_job || ':' || _tenant.tenant_id));
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
