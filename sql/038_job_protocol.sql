-- The contract between a job body and whoever runs it (reco.run_job in sql/045_job_runner.sql, pg_cron, and
-- jobs/runner.py for the numpy steps): progress as NOTICEs, which Python steps this session computed
-- (session setting reco.python_steps), and deferring the rest to reco.job_queue.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

-- A step of a long job, as a NOTICE: psql shows it, `reco jobs run` turns it into progress.
CREATE OR REPLACE FUNCTION reco._progress(p_job text, p_tenant_id int, p_step text)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE NOTICE 'progress: % [%]: %', p_job, (SELECT slug FROM reco.tenants WHERE tenant_id = p_tenant_id), p_step;
END $$;

-- Whether the Python caller (jobs/runner.py) computed a step's numpy part in this session before
-- CALL reco.run_job: it names the steps in the session setting reco.python_steps. pg_cron never does.
CREATE OR REPLACE FUNCTION reco._python_step(p_step text)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT p_step = ANY (string_to_array(coalesce(current_setting('reco.python_steps', true), ''), ','))
$$;

-- A job body that left part of its work for Python: the work goes into reco.job_queue (picked up
-- by `reco jobs loop`), the run is logged 'deferred' with p_message (reco.run_job reads both).
CREATE OR REPLACE FUNCTION reco._defer(p_tenant_id int, p_job text, p_message text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO reco.job_queue (tenant_id, job, reason) VALUES (p_tenant_id, p_job, p_message)
    ON CONFLICT ON CONSTRAINT job_queue_pkey DO UPDATE SET reason = excluded.reason;
    PERFORM set_config('reco.job_status', 'deferred', true);
    PERFORM set_config('reco.job_message', p_message, true);
END $$;
