-- Public, documented entry points for what Python (the CLI, the job runner, the tools) asks of the
-- database and that was until now only a private helper (reco._*). Python calls these, never a
-- reco._* function (tests/test_layout.py checks). Each is a thin wrapper: the private helper stays
-- the one definition the SQL bodies use. Those whose helper is defined in a later file live at the end
-- of that file instead (the evaluation steps in sql/060_evaluation.sql, the tune steps in
-- sql/065_tune.sql): a LANGUAGE sql body is checked when it is created.
--
-- Privileges (sql/095_security.sql): none of these is SECURITY DEFINER nor named api_*, so reco_api
-- may execute none of them; reco_analyst may (row-level security limits what they read), as it may
-- the helpers they wrap.

CREATE OR REPLACE FUNCTION reco.tenant_id(p_tenant text DEFAULT NULL)
RETURNS int
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT reco._tenant_id(p_tenant)
$$;
COMMENT ON FUNCTION reco.tenant_id(text) IS
$c$the tenant_id of a tenant slug, to join the tables keyed by tenant_id; NULL means the session's tenant (SET
reco.tenant = 'acme'), else 'default'. An unknown tenant (or one an analyst was not granted) raises no_data_found
with a hint. Example: SELECT count(*) FROM reco.users WHERE tenant_id = reco.tenant_id('acme');$c$;

CREATE OR REPLACE FUNCTION reco.require_pg_cron()
RETURNS void
LANGUAGE sql STABLE AS $$
    SELECT reco._require_pg_cron()
$$;
COMMENT ON FUNCTION reco.require_pg_cron() IS
    'raise feature_not_supported, with what to configure in its hint, when pg_cron is not installed in this database (what reco.schedule_jobs checks first); returns nothing otherwise';
