-- Tenants, settings and the small helpers every other file uses.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

-- ---------------------------------------------------------------------------------------
-- Tenants
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._tenant_id(p_tenant text DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    _slug text := coalesce(p_tenant, nullif(current_setting('reco.tenant', true), ''), 'default');
    _id int;
BEGIN
    SELECT tenant_id INTO _id FROM reco.tenants WHERE slug = _slug;
    IF _id IS NULL AND row_security_active('reco.tenants') AND pg_has_role('reco_analyst', 'MEMBER') THEN
        -- an analyst: row-level security hides every tenant not granted to it, so say that,
        -- and which ones it reads (creating the tenant is not the answer)
        RAISE EXCEPTION 'role "%" sees no tenant "%"', current_user, _slug
            USING ERRCODE = 'no_data_found',
                  HINT = coalesce(
                      (SELECT format('It reads %s: pass one (p_tenant), or SET reco.tenant = %L.',
                                     string_agg(format('%L', slug), ', ' ORDER BY slug), min(slug))
                       FROM reco.tenants WHERE evaluation_of IS NULL),
                      format('It reads no tenant: the owner grants one with reco analysts grant --tenant T %s.',
                             current_user));
    ELSIF _id IS NULL THEN
        RAISE EXCEPTION 'unknown tenant "%"', _slug
            USING ERRCODE = 'no_data_found',
                  HINT = format('Create it with SELECT reco.create_tenant(%L);', _slug);
    END IF;
    RETURN _id;
END $$;
COMMENT ON FUNCTION reco._tenant_id(text) IS
    'internal: tenant id of a slug; NULL means the reco.tenant setting, else ''default''';

CREATE OR REPLACE FUNCTION reco.create_tenant(p_slug text)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    _id int;
BEGIN
    IF p_slug IS NULL OR p_slug !~ '^[a-z0-9][a-z0-9_-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid tenant slug "%"', p_slug
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 1-63 characters: lower-case letters, digits, "_" and "-".';
    END IF;
    INSERT INTO reco.tenants (slug) VALUES (p_slug)
    ON CONFLICT ON CONSTRAINT tenants_slug_key DO NOTHING;
    SELECT tenant_id INTO _id FROM reco.tenants WHERE slug = p_slug;
    RETURN _id;
END $$;
COMMENT ON FUNCTION reco.create_tenant(text) IS
    'create a tenant (idempotent); returns its tenant_id';

-- ---------------------------------------------------------------------------------------
-- Settings: documented defaults in reco.setting_definitions, per-tenant overrides in
-- reco.settings. Read on every call, so a change takes effect on the next call.
-- ---------------------------------------------------------------------------------------

INSERT INTO reco.setting_definitions (key, default_value, description) VALUES
    ('decay_tau_days', '14',
     'time constant τ (days) of the exponential decay of interaction weights; a change applies to new events'),
    ('success_bonus', '0.2',
     'γ: a successful use weighs (1 + γ) times an unsuccessful one in reco.interactions'),
    ('kind_weights', '{"use": 1.0}',
     'weight of each event kind in reco.interactions; kinds not listed weigh 1.0'),
    ('max_future', '"1 hour"',
     'events later than now() + this interval are rejected as "in the future"'),
    ('max_event_age', '"50 years"',
     'events older than now() - this interval are rejected as too old (a stray old timestamp skews the decay and the history)'),
    ('segment_attributes', '["industry", "paid", "usage_band"]',
     'user attributes that define segments (cohort priors, segment popularity, bandits)')
ON CONFLICT (key) DO UPDATE
    SET default_value = excluded.default_value, description = excluded.description;

CREATE OR REPLACE FUNCTION reco.setting(p_key text, p_tenant_id int)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(
        (SELECT s.value FROM reco.settings s WHERE s.tenant_id = p_tenant_id AND s.key = p_key),
        (SELECT d.default_value FROM reco.setting_definitions d WHERE d.key = p_key))
$$;
COMMENT ON FUNCTION reco.setting(text, int) IS
    'effective value of a setting for a tenant id: the override, else the documented default';

CREATE OR REPLACE FUNCTION reco.set_setting(p_key text, p_value jsonb, p_tenant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _value jsonb := reco.check_setting(p_key, p_value);  -- type, range and unit: sql/011_setting_rules.sql
BEGIN
    INSERT INTO reco.settings (tenant_id, key, value) VALUES (_tid, p_key, _value)
    ON CONFLICT ON CONSTRAINT settings_pkey
        DO UPDATE SET value = excluded.value, updated_at = now();
    RETURN _value;
END $$;
COMMENT ON FUNCTION reco.set_setting(text, jsonb, text) IS
    'override a setting for a tenant (default tenant when NULL), checked by reco.check_setting; returns the value stored (normalised: 50.0 is stored as 50); takes effect on the next call';

CREATE OR REPLACE FUNCTION reco.reset_setting(p_key text, p_tenant text DEFAULT NULL)
RETURNS void
LANGUAGE sql AS $$
    DELETE FROM reco.settings WHERE tenant_id = reco._tenant_id(p_tenant) AND key = p_key
$$;
COMMENT ON FUNCTION reco.reset_setting(text, text) IS
    'drop a tenant''s override so the documented default applies again';

CREATE OR REPLACE VIEW reco.effective_settings AS
SELECT t.slug AS tenant, d.key, coalesce(s.value, d.default_value) AS value,
       s.value IS NULL AS is_default, d.default_value, d.description
FROM reco.tenants t
CROSS JOIN reco.setting_definitions d
LEFT JOIN reco.settings s ON s.tenant_id = t.tenant_id AND s.key = d.key;
COMMENT ON VIEW reco.effective_settings IS
    'every setting of every tenant with the value in force, whether it is the default, and what it means';

-- ---------------------------------------------------------------------------------------
-- Event partitions: one per calendar month (UTC) from 24 months back on, created as data
-- arrives; older events go to reco.events_default. The horizon only moves forward, so a month
-- never has rows in both.
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.partition_horizon()
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE SET TimeZone = 'UTC' AS $$
    SELECT date_trunc('month', now()) - interval '24 months'
$$;
COMMENT ON FUNCTION reco.partition_horizon() IS
    'the first month with a partition of its own in reco.events (24 months back); older events are in reco.events_default';

CREATE OR REPLACE FUNCTION reco.ensure_event_partitions(p_from timestamptz, p_to timestamptz)
RETURNS int
LANGUAGE plpgsql SET TimeZone = 'UTC' AS $$
DECLARE
    _month timestamptz := greatest(date_trunc('month', p_from), reco.partition_horizon());
    _name text;
    _created int := 0;
BEGIN
    IF p_from IS NULL OR p_to IS NULL THEN
        RETURN 0;
    END IF;
    IF p_to - p_from > interval '100 years' THEN
        RAISE EXCEPTION 'refusing to create partitions for % .. %', p_from, p_to
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Check the event times.';
    END IF;
    WHILE _month <= p_to LOOP
        _name := 'events_' || to_char(_month, 'YYYY_MM');
        IF to_regclass('reco.' || _name) IS NULL THEN
            -- Serialise creators. The lock alone is not enough: an advisory lock does not
            -- refresh this session's view of the catalog, so a partition created meanwhile
            -- by another session may still look absent; its CREATE then says duplicate_table.
            PERFORM pg_advisory_xact_lock(7281002);
            BEGIN
                EXECUTE format(
                    'CREATE TABLE reco.%I PARTITION OF reco.events FOR VALUES FROM (%L) TO (%L)',
                    _name, _month, _month + interval '1 month');
                EXECUTE format('COMMENT ON TABLE reco.%I IS %L', _name,
                    format('reco.events for %s (UTC)', to_char(_month, 'YYYY-MM')));
                _created := _created + 1;
            EXCEPTION WHEN duplicate_table THEN
                NULL;  -- created by a concurrent session
            END;
        END IF;
        _month := _month + interval '1 month';
    END LOOP;
    RETURN _created;
END $$;
COMMENT ON FUNCTION reco.ensure_event_partitions(timestamptz, timestamptz) IS
    'create the monthly partitions of reco.events covering [p_from, p_to] from the partition horizon on (older months are in events_default); returns how many were new';

-- ---------------------------------------------------------------------------------------
-- Parsing helpers for ingest (text in, typed value or NULL out).
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._parse_bool(p text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE lower(btrim(p))
        WHEN 'true' THEN true WHEN 't' THEN true WHEN '1' THEN true WHEN 'yes' THEN true
        WHEN 'y' THEN true WHEN 'on' THEN true
        WHEN 'false' THEN false WHEN 'f' THEN false WHEN '0' THEN false WHEN 'no' THEN false
        WHEN 'n' THEN false WHEN 'off' THEN false
    END
$$;

CREATE OR REPLACE FUNCTION reco._parse_number(p text)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN btrim(p) ~ '^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?$' THEN btrim(p)::numeric END
$$;

-- Fast path: epoch seconds or ISO 8601 by pattern. A string that matches the pattern but is
-- not a real date (2024-02-30) raises; callers then fall back to reco._parse_time_safe.
CREATE OR REPLACE FUNCTION reco._parse_time(p text)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p ~ '^\s*[+-]?\d{1,12}(\.\d+)?\s*$' THEN to_timestamp(btrim(p)::float8)
        WHEN p ~ '^\s*\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)?\s*$'
            THEN btrim(p)::timestamptz
    END
$$;

CREATE OR REPLACE FUNCTION reco._parse_time_safe(p text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN reco._parse_time(p);
EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format OR numeric_value_out_of_range
        OR invalid_parameter_value THEN
    RETURN NULL;
END $$;
