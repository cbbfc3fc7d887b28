-- Setting rules: the type, range and unit of every setting, and the one validator that applies them wherever a
-- setting is stored (reco.set_setting, scenario and variant overrides, a trigger on the tables for direct writes).
-- Nothing that breaks serving can be stored; values stored before the rules existed are repaired by
-- reco.repair_stored_settings() (run by every `reco migrate`, sql/090_setting_repair.sql).
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.
--
-- Sync contract: a setting added to reco.setting_definitions (every default is in sql/010_tenants_settings.sql)
-- gets a row here;
-- tests/test_settings_validation.py fails for a definition without a rule. docs/settings.md is generated from
-- reco.setting_catalog (`reco settings docs`).

-- kind:  integer   a JSON number without a fraction (50.0 is stored as 50), lo..hi
--        number    a JSON number, lo..hi
--        interval  a JSON string PostgreSQL reads as an interval, lo..hi seconds
--        choice    a JSON string among choices
--        names     a JSON array of at most hi distinct names (1-63 characters)
--        weights   a JSON object of at most 100 names, each to a number in lo..hi
--        name      a JSON string of lo..hi characters (an event kind, a prop, an attribute; "" where allowed)
CREATE OR REPLACE FUNCTION reco.setting_rules()
RETURNS TABLE (key text, kind text, lo numeric, hi numeric, unit text, choices text[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT * FROM (VALUES
        -- ingest and decay
        ('decay_tau_days', 'number', 0.01, 36500, 'days', NULL::text[]),
        ('success_bonus', 'number', 0, 100, 'ratio', NULL),
        ('kind_weights', 'weights', 0, 1000, 'weight per event kind', NULL),
        ('max_future', 'interval', 0, 366 * 86400, 'interval', NULL),
        ('max_event_age', 'interval', 86400, 100 * 365.25 * 86400, 'interval', NULL),
        ('segment_attributes', 'names', 0, 10, 'attribute names', NULL),
        -- jobs
        ('neighbor_model', 'choice', NULL, NULL, NULL, '{cosine,rp3beta,ease}'),
        ('neighbors_k', 'integer', 1, 1000, 'neighbours', NULL),
        ('sql_factors_max_features', 'integer', 64, 1000000, 'features', NULL),
        ('neighbor_shrinkage', 'number', 0, 1000000, 'users', NULL),
        ('rp3_alpha', 'number', 0.01, 10, 'exponent', NULL),
        ('rp3_beta', 'number', 0, 2, 'exponent', NULL),
        ('ease_lambda', 'number', 0.001, 1e9, 'L2 weight', NULL),
        ('ease_max_features', 'integer', 1, 100000, 'features', NULL),
        ('neighbor_user_items', 'integer', 0, 1000000, 'features per user', NULL),
        ('neighbor_pairs_max', 'integer', 1000, 10000000000, 'pairs', NULL),
        ('min_feature_users', 'integer', 0, 1000000000, 'users', NULL),
        ('bandit_window', 'interval', 60, 366 * 86400, 'interval', NULL),
        ('rebase_after', 'number', 1, 600, 'natural-log units (e^x)', NULL),
        ('exposure_retention', 'interval', 86400, 10 * 365.25 * 86400, 'interval', NULL),
        ('hnsw_m', 'integer', 2, 100, 'links', NULL),
        -- serving (reco.serving_settings(): scenarios and variants may override these)
        ('weight_itemcf', 'number', 0, 1000, 'weight', NULL),
        ('weight_usercf', 'number', 0, 1000, 'weight', NULL),
        ('weight_prior', 'number', 0, 1000, 'weight', NULL),
        ('weight_popularity', 'number', 0, 1000, 'weight', NULL),
        ('weight_session', 'number', 0, 1000, 'weight', NULL),
        ('weight_explore', 'number', 0, 1000, 'weight', NULL),
        ('explore_below', 'integer', 0, 100000, 'interactions', NULL),
        ('seen_factor', 'number', 0, 1, 'multiplier', NULL),
        ('mmr_lambda', 'number', 0, 1, 'ratio', NULL),
        ('user_neighbors', 'integer', 1, 1000, 'users', NULL),
        ('hnsw_ef_search', 'integer', 1, 1000, 'candidates (pgvector limit)', NULL),
        ('candidates', 'integer', 1, 1000, 'features per list', NULL),
        ('history_limit', 'integer', 1, 100000, 'features', NULL),
        ('itemcf_rows', 'integer', 1, 10000000, 'neighbour rows', NULL),
        ('min_segment_users', 'integer', 1, 1000000000, 'users', NULL),
        ('plan_window_days', 'integer', 1, 400, 'days', NULL),
        -- evaluation and tuning
        ('evaluation_users', 'integer', 0, 100000000, 'users (0 = all)', NULL),
        ('tune_min_gain', 'number', 0, 1000000, 'standard errors', NULL),
        -- retention lists (sql/087_retention.sql, sql/088_retention_loop.sql)
        ('churn_payment_kind', 'name', 1, 63, 'event kind', NULL),
        ('churn_payment_prop', 'name', 1, 63, 'event prop', NULL),
        ('retention_value_alpha', 'number', 0, 1000, 'multiplier of 30-day payments', NULL),
        ('retention_value_attribute', 'name', 0, 63, 'user attribute ("" = payments)', NULL),
        ('retention_holdout', 'number', 0, 0.5, 'share of a list', NULL),
        ('retention_window_days', 'integer', 1, 365, 'days', NULL),
        ('retention_max_contacts', 'integer', 1, 1000, 'contacts per cap window', NULL),
        ('retention_cap_window', 'interval', 86400, 366 * 86400, 'interval', NULL),
        ('retention_cooldown', 'interval', 0, 366 * 86400, 'interval', NULL),
        ('retention_alpha', 'number', 0.0001, 0.5, 'significance level', NULL),
        ('retention_min_held_out', 'integer', 1, 1000000, 'held-out users per action and tier', NULL),
        ('retention_qini_min_lists', 'integer', 1, 1000, 'matured lists', NULL),
        -- churn (sql/082_churn_features.sql)
        ('churn_window_days', 'integer', 1, 3650, 'days', NULL),
        ('churn_observation_days', 'integer', 8, 3650, 'days', NULL),
        ('churn_activity_kinds', 'names', 0, 50, 'event kinds (none = every kind)', NULL),
        ('churn_snapshot_every_days', 'integer', 1, 365, 'days', NULL),
        ('churn_train_snapshots', 'integer', 1, 520, 'snapshot days', NULL),
        ('churn_validation_snapshots', 'integer', 1, 52, 'snapshot days', NULL),
        ('churn_min_history_days', 'integer', 0, 3650, 'days', NULL),
        ('churn_min_churners', 'integer', 1, 1000000000, 'users', NULL),
        ('churn_tier_high', 'number', 0, 1, 'probability', NULL),
        ('churn_tier_medium', 'number', 0, 1, 'probability', NULL),
        ('churn_l2', 'number', 0, 1000000, 'L2 weight', NULL),
        ('churn_lightgbm_min_rows', 'integer', 0, 1000000000, 'training rows', NULL),
        ('churn_psi_retrain', 'number', 0, 100, 'PSI', NULL),
        ('churn_auc_drop_retrain', 'number', 0, 1, 'AUC', NULL)
    ) AS r(key, kind, lo, hi, unit, choices)
$$;
COMMENT ON FUNCTION reco.setting_rules() IS
$c$the rule of every setting: kind (integer, number, interval, choice, names, weights), range lo..hi (seconds for
intervals, the most names for names), unit, choices. reco.check_setting applies them. Example:
SELECT * FROM reco.setting_rules() WHERE key = 'candidates';  -- candidates | integer | 1 | 1000 | features per list |$c$;

-- seconds in the largest unit that divides them: 86400 -> '1 day', 3155760000 -> '100 years'
CREATE OR REPLACE FUNCTION reco._seconds_text(p_seconds numeric)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_seconds = 0 THEN '0' ELSE
        (SELECT format('%s %s%s', trim_scale(p_seconds / u.secs), u.name, CASE WHEN p_seconds = u.secs THEN '' ELSE 's' END)
         FROM (VALUES (1, 31557600::numeric, 'year'), (2, 86400, 'day'), (3, 3600, 'hour'), (4, 60, 'minute'),
                      (5, 1, 'second')) AS u(o, secs, name)
         WHERE p_seconds % u.secs = 0 ORDER BY u.o LIMIT 1) END
$$;

CREATE OR REPLACE FUNCTION reco._setting_range(p_lo numeric, p_hi numeric, p_kind text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_kind
        WHEN 'interval' THEN format('%s to %s', reco._seconds_text(p_lo), reco._seconds_text(p_hi))
        WHEN 'names' THEN format('at most %s', p_hi)
        WHEN 'name' THEN format('%s to %s characters', p_lo, p_hi)
        WHEN 'weights' THEN format('each %s to %s', p_lo, p_hi)
        ELSE format('%s to %s', p_lo, p_hi)
    END
$$;

-- The value to store for a setting: p_value checked against the key's rule and normalised (an integral number
-- written 50.0 becomes 50), or invalid_parameter_value naming the key and the rule. A key without a rule (a
-- setting added without one) is checked by the JSON type of its default.
CREATE OR REPLACE FUNCTION reco.check_setting(p_key text, p_value jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    _r record;
    _default jsonb;
    _want text;
    _n numeric;
    _secs numeric;
    _bad text;
BEGIN
    SELECT default_value INTO _default FROM reco.setting_definitions WHERE key = p_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown setting "%"', p_key
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'SELECT key, description FROM reco.setting_definitions; lists the settings.';
    END IF;
    SELECT * INTO _r FROM reco.setting_rules() AS r WHERE r.key = p_key;
    _want := CASE _r.kind WHEN 'integer' THEN 'number' WHEN 'number' THEN 'number' WHEN 'interval' THEN 'string'
                          WHEN 'choice' THEN 'string' WHEN 'names' THEN 'array' WHEN 'weights' THEN 'object'
                          WHEN 'name' THEN 'string'
                          ELSE jsonb_typeof(_default) END;
    IF p_value IS NULL OR jsonb_typeof(p_value) <> _want THEN
        RAISE EXCEPTION 'setting "%" takes a JSON %, not %', p_key, _want, coalesce(jsonb_typeof(p_value), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = format('The default is %s.', _default);
    END IF;
    IF _r.kind IS NULL THEN
        RETURN p_value;
    ELSIF _r.kind IN ('integer', 'number') THEN
        _n := p_value::numeric;
        IF _r.kind = 'integer' AND _n <> trunc(_n) THEN
            _bad := 'a whole number';
        ELSIF _n NOT BETWEEN _r.lo AND _r.hi THEN
            _bad := format('between %s and %s', _r.lo, _r.hi);
        ELSIF _r.kind = 'integer' THEN
            RETURN to_jsonb(trunc(_n));
        END IF;
    ELSIF _r.kind = 'interval' THEN
        BEGIN
            _secs := extract(epoch FROM (p_value #>> '{}')::interval);
        EXCEPTION WHEN data_exception THEN
            _bad := 'an interval such as "7 days"';
        END;
        IF _bad IS NULL AND _secs NOT BETWEEN _r.lo AND _r.hi THEN
            _bad := 'an interval from ' || reco._setting_range(_r.lo, _r.hi, 'interval');
        END IF;
    ELSIF _r.kind = 'choice' THEN
        IF (p_value #>> '{}') <> ALL (_r.choices) THEN
            _bad := 'one of ' || array_to_string(_r.choices, ', ');
        END IF;
    ELSIF _r.kind = 'name' THEN
        IF length(p_value #>> '{}') NOT BETWEEN _r.lo AND _r.hi THEN
            _bad := format('a string of %s to %s characters', _r.lo, _r.hi);
        END IF;
    ELSIF _r.kind = 'names' THEN
        IF jsonb_array_length(p_value) > _r.hi
           OR jsonb_path_exists(p_value, '$[*] ? (@.type() != "string")')
           OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(p_value) AS a(v)
                      WHERE length(a.v) NOT BETWEEN 1 AND 63)
           OR (SELECT count(DISTINCT a.v) <> count(*) FROM jsonb_array_elements_text(p_value) AS a(v)) THEN
            _bad := format('an array of at most %s distinct names of 1-63 characters', _r.hi);
        END IF;
    ELSIF _r.kind = 'weights' THEN
        IF (SELECT count(*) FROM jsonb_object_keys(p_value)) > 100
           OR EXISTS (SELECT 1 FROM jsonb_each(p_value) AS w
                      WHERE length(w.key) NOT BETWEEN 1 AND 63 OR jsonb_typeof(w.value) <> 'number'
                         OR w.value::numeric NOT BETWEEN _r.lo AND _r.hi) THEN
            _bad := format('an object of at most 100 names, each to a number between %s and %s', _r.lo, _r.hi);
        END IF;
    END IF;
    IF _bad IS NOT NULL THEN
        RAISE EXCEPTION 'setting "%" must be %, not %', p_key, _bad,
                CASE WHEN jsonb_typeof(p_value) = 'number' AND length(p_value::text) > 20
                     THEN btrim(to_char(p_value::numeric, '9.999EEEE')) ELSE left(p_value::text, 80) END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Unit: %s. The default is %s.', coalesce(_r.unit, _r.kind), _default);
    END IF;
    RETURN p_value;
END $$;
COMMENT ON FUNCTION reco.check_setting(text, jsonb) IS
$c$the value to store for a setting, checked against its rule (reco.setting_rules) and normalised, or
invalid_parameter_value with the rule. set_setting, scenarios, experiment variants and direct writes to the tables
all go through it. Example:
SELECT reco.check_setting('candidates', '50.0');  -- 50
SELECT reco.check_setting('candidates', '1e9');   -- ERROR: setting "candidates" must be between 1 and 1000, not 1000000000$c$;

-- The value a setting has for serving when a stored one fails its rule: the checked value, else the default.
CREATE OR REPLACE FUNCTION reco._setting_or_default(p_key text, p_value jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN reco.check_setting(p_key, p_value);
EXCEPTION WHEN invalid_parameter_value THEN
    RAISE WARNING 'stored setting "%" = % is invalid (%); serving its default', p_key, left(p_value::text, 80), SQLERRM;
    RETURN (SELECT d.default_value FROM reco.setting_definitions d WHERE d.key = p_key);
END $$;

-- p_config with every value that fails its rule replaced by the default (serving's fallback)
CREATE OR REPLACE FUNCTION reco.sane_settings(p_config jsonb)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_object_agg(c.key, reco._setting_or_default(c.key, c.value)), '{}')
    FROM jsonb_each(p_config) AS c
    WHERE EXISTS (SELECT 1 FROM reco.setting_definitions d WHERE d.key = c.key)
$$;
COMMENT ON FUNCTION reco.sane_settings(jsonb) IS
    'a settings object with every value that fails its rule replaced by the default (with a WARNING): what serving falls back to when a stored value cannot be read';

-- Direct writes to the tables that hold setting values go through the same checks (a value is normalised).
CREATE OR REPLACE FUNCTION reco._check_stored_settings()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'settings' THEN
        NEW.value := reco.check_setting(NEW.key, NEW.value);
    ELSE
        NEW.overrides := reco._check_overrides(NEW.overrides, TG_TABLE_NAME);
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER settings_check_trg BEFORE INSERT OR UPDATE OF key, value ON reco.settings
    FOR EACH ROW EXECUTE FUNCTION reco._check_stored_settings();
CREATE OR REPLACE TRIGGER scenarios_check_trg BEFORE INSERT OR UPDATE OF overrides ON reco.scenarios
    FOR EACH ROW EXECUTE FUNCTION reco._check_stored_settings();
CREATE OR REPLACE TRIGGER experiment_variants_check_trg BEFORE INSERT OR UPDATE OF overrides
    ON reco.experiment_variants
    FOR EACH ROW EXECUTE FUNCTION reco._check_stored_settings();
