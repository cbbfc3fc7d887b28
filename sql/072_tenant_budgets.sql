-- Tenant budgets: what one tenant may take of what is expensive for the API, so that it cannot slow
-- the others while staying under its per-key rate limit (app.api.budgets enforces them).
--
-- Sync contract: the budgets are the columns of reco.tenant_budgets (migration 0023) but tenant_id and
-- updated_at; the API's defaults for them are the RECO_TENANT_<NAME> settings (app/settings.py,
-- Settings.tenant_<name>), and docs/fairness.md lists them. A new budget: a column, a setting, a line
-- in the docs; the functions below read the column list from the catalog.

-- The budget names: the columns of reco.tenant_budgets but the key and the timestamp.
CREATE OR REPLACE FUNCTION reco._tenant_budget_fields()
RETURNS text[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT array_agg(a.attname::text ORDER BY a.attnum)
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = 'reco.tenant_budgets'::regclass AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname NOT IN ('tenant_id', 'updated_at')
$$;
COMMENT ON FUNCTION reco._tenant_budget_fields() IS
    'internal: the names of the tenant budgets (the columns of reco.tenant_budgets but tenant_id and updated_at)';

-- A tenant's overrides as a JSON object (the budgets it does not override are left out).
CREATE OR REPLACE FUNCTION reco._tenant_budget(p_tenant_id int)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce((SELECT jsonb_strip_nulls(to_jsonb(b) - 'tenant_id' - 'updated_at')
                     FROM reco.tenant_budgets b WHERE b.tenant_id = p_tenant_id), '{}'::jsonb)
$$;
COMMENT ON FUNCTION reco._tenant_budget(int) IS
    'internal: the budgets a tenant (by id) overrides, as a JSON object; {} when it overrides none';

CREATE OR REPLACE FUNCTION reco.tenant_budget(p_tenant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT reco._tenant_budget(reco._tenant_id(p_tenant))
$$;
COMMENT ON FUNCTION reco.tenant_budget(text) IS
$c$the budgets a tenant overrides (the others are the API's defaults, RECO_TENANT_*), as a JSON object.
Example: SELECT reco.tenant_budget('acme'); → {"bytes_per_s": 16000000, "events_per_s": 40000}$c$;

CREATE OR REPLACE FUNCTION reco.set_tenant_budget(p_tenant text, p_budget jsonb)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _fields text[] := reco._tenant_budget_fields();
    _hint text := format('The budgets: %s; each a number >= 0 (0: unlimited) or null (back to the default). '
                         'E.g. SELECT reco.set_tenant_budget(''acme'', ''{"events_per_s": 40000}'');',
                         array_to_string(_fields, ', '));
    _name text;
    _value jsonb;
    _merged jsonb;
BEGIN
    IF p_budget IS NULL OR jsonb_typeof(p_budget) <> 'object' THEN
        RAISE EXCEPTION 'a budget is a JSON object, got %', coalesce(jsonb_typeof(p_budget), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = _hint;
    END IF;
    FOR _name, _value IN SELECT e.key, e.value FROM jsonb_each(p_budget) AS e LOOP
        IF NOT _name = ANY (_fields) THEN
            RAISE EXCEPTION 'unknown budget "%"', _name USING ERRCODE = 'invalid_parameter_value', HINT = _hint;
        END IF;
        CONTINUE WHEN jsonb_typeof(_value) = 'null';
        IF jsonb_typeof(_value) <> 'number' THEN
            RAISE EXCEPTION 'budget % must be a number or null, got %', _name, _value
                USING ERRCODE = 'invalid_parameter_value', HINT = _hint;
        END IF;
        IF _value::numeric < 0 OR _value::numeric > 1e15 THEN
            RAISE EXCEPTION 'budget % must be between 0 and 1e15, got %', _name, _value
                USING ERRCODE = 'check_violation', HINT = _hint;
        END IF;
        IF _name LIKE '%\_statements' AND (_value::numeric <> trunc(_value::numeric) OR _value::numeric > 10000) THEN
            RAISE EXCEPTION 'budget % is a whole number of statements (at most 10000), got %', _name, _value
                USING ERRCODE = 'invalid_parameter_value', HINT = _hint;
        END IF;
    END LOOP;
    _merged := jsonb_strip_nulls(reco._tenant_budget(_tid) || p_budget);
    DELETE FROM reco.tenant_budgets WHERE tenant_id = _tid;
    IF _merged <> '{}' THEN
        INSERT INTO reco.tenant_budgets
        SELECT (jsonb_populate_record(NULL::reco.tenant_budgets,
                                      _merged || jsonb_build_object('tenant_id', _tid, 'updated_at', now()))).*;
    END IF;
    RETURN _merged;
END $$;
COMMENT ON FUNCTION reco.set_tenant_budget(text, jsonb) IS
$c$override some of a tenant's budgets (a key set to null goes back to the API's default; 0 is unlimited) and
return the overrides now in force; the API applies them within RECO_TENANT_BUDGET_TTL seconds.
Example: SELECT reco.set_tenant_budget('acme', '{"events_per_s": 40000, "bytes_per_s": 16e6}');
→ {"bytes_per_s": 16000000, "events_per_s": 40000}$c$;

DROP FUNCTION IF EXISTS reco.api_tenant_budget(bytea);  -- the key's hash was the credential until issue 24
CREATE OR REPLACE FUNCTION reco.api_tenant_budget(p_auth text)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('tenant', k.slug, 'budget', reco._tenant_budget(k.tenant_id))
    FROM reco._console_auth(p_auth) AS k
$$;
COMMENT ON FUNCTION reco.api_tenant_budget(text) IS
$c$the tenant of an API key or console session (the key itself, checked in the database) and the budgets it overrides, read by the API (and kept a few
seconds) to enforce them: {"tenant": "acme", "budget": {"events_per_s": 40000}};
invalid_authorization_specification (28000) for an unknown or revoked key$c$;

COMMENT ON TABLE reco.tenant_budgets IS
    'per-tenant overrides of the API''s budgets (reco.set_tenant_budget; NULL: the RECO_TENANT_* default, 0: unlimited)';
COMMENT ON COLUMN reco.tenant_budgets.events_per_s IS 'events a second the tenant may POST (a token bucket; a batch may borrow ahead)';
COMMENT ON COLUMN reco.tenant_budgets.bytes_per_s IS 'request-body bytes a second on the write routes, charged before the body is read';
COMMENT ON COLUMN reco.tenant_budgets.read_statements IS 'read-pool statements the tenant may run at once (per API process)';
COMMENT ON COLUMN reco.tenant_budgets.write_statements IS 'write-pool requests the tenant may run at once (per API process)';
COMMENT ON COLUMN reco.tenant_budgets.console_per_s IS 'console pages a second the tenant may load';
COMMENT ON COLUMN reco.tenant_budgets.console_statements IS 'console queries the tenant may run at once (per API process)';
