-- Scenarios, experiments and assignment: what a request is served with. What an experiment measured
-- (outcomes, statistics, the report) is in sql/080_experiment_analysis.sql.
--
-- A scenario is a placement ('home', 'onboarding_email', ...): a named set of setting overrides on
-- top of the tenant's settings. An experiment runs in one scenario: a share of the scenario's users
-- (traffic) is split over variants by weight, each variant a set of overrides on top of the
-- scenario's. Assignment is a hash of (salt, user id), so the same user gets the same variant on
-- every server and every call, without a stored row; experiments running in one scenario take
-- disjoint slices of the scenario's hash space, so they never share a user. What a user was shown,
-- under which experiment and variant, is recorded in reco.exposures by the call that served it.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

-- ---------------------------------------------------------------------------------------
-- Hashing: GrowthBook's FNV-1a 32 "v2" (so assignments can be reproduced in their SDKs)
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.fnv1a32(p text)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    _b bytea := convert_to(p, 'UTF8');
    _h bigint := 2166136261;  -- the FNV offset basis
BEGIN
    FOR i IN 0 .. length(_b) - 1 LOOP
        _h := ((_h # get_byte(_b, i)) * 16777619) & 4294967295;  -- × the FNV prime, mod 2^32
    END LOOP;
    RETURN _h;
END $$;
COMMENT ON FUNCTION reco.fnv1a32(text) IS
    'FNV-1a, 32 bits, over the UTF-8 bytes of a text (GrowthBook hashes UTF-16 code units: the same for ASCII ids)';

CREATE OR REPLACE FUNCTION reco.bucket(p_seed text, p_value text)
RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (reco.fnv1a32(reco.fnv1a32(p_seed || p_value)::text) % 10000) / 10000.0::float8
$$;
COMMENT ON FUNCTION reco.bucket(text, text) IS
$c$a user's place in [0, 1) for a seed: GrowthBook's hash v2, fnv1a32(fnv1a32(seed || value)::text) % 10000 / 10000.
Example: SELECT reco.bucket('seed', 'a');  -- 0.0505$c$;

-- ---------------------------------------------------------------------------------------
-- Overrides: the settings a scenario or a variant may change are those read when serving
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.serving_settings()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY(SELECT 'weight_' || c FROM unnest(reco._component_names()) AS c)
           || '{seen_factor,mmr_lambda,explore_below,candidates,history_limit,user_neighbors,hnsw_ef_search}'::text[]
$$;
COMMENT ON FUNCTION reco.serving_settings() IS
    'the settings read on every request, which scenarios and experiment variants may override';

-- The overrides to store: every key a serving setting, every value checked and normalised by reco.check_setting.
CREATE OR REPLACE FUNCTION reco._check_overrides(p_overrides jsonb, p_what text)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _bad text;
    _hint text;
    _checked jsonb := '{}';
    _o record;
BEGIN
    IF p_overrides IS NULL OR jsonb_typeof(p_overrides) <> 'object' THEN
        RAISE EXCEPTION '% overrides must be a JSON object of settings', p_what
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ''{"weight_usercf": 0.3, "mmr_lambda": 0.8}''';
    END IF;
    SELECT o INTO _bad FROM jsonb_object_keys(p_overrides) AS o WHERE o <> ALL (reco.serving_settings()) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '% overrides: "%" is not a serving setting', p_what, _bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Settings read when serving: ' || array_to_string(reco.serving_settings(), ', ')
                         || '. Settings of the jobs (e.g. neighbor_model) are per tenant.';
    END IF;
    FOR _o IN SELECT o.key, o.value FROM jsonb_each(p_overrides) AS o LOOP
        BEGIN
            _checked := _checked || jsonb_build_object(_o.key, reco.check_setting(_o.key, _o.value));
        EXCEPTION WHEN invalid_parameter_value THEN
            GET STACKED DIAGNOSTICS _bad = MESSAGE_TEXT, _hint = PG_EXCEPTION_HINT;
            RAISE EXCEPTION '% overrides: %', p_what, _bad USING ERRCODE = 'invalid_parameter_value', HINT = _hint;
        END;
    END LOOP;
    RETURN _checked;
END $$;

CREATE OR REPLACE FUNCTION reco._check_name(p_name text, p_what text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_name IS NULL OR p_name !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid % name "%"', p_what, p_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 1-63 characters: lower-case letters, digits, "_", "." and "-".';
    END IF;
    RETURN p_name;
END $$;

-- ---------------------------------------------------------------------------------------
-- Scenarios
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.upsert_scenario(p_name text, p_overrides jsonb DEFAULT '{}',
                                                p_description text DEFAULT '', p_tenant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _overrides jsonb;
BEGIN
    PERFORM reco._check_name(p_name, 'scenario');
    _overrides := reco._check_overrides(p_overrides, 'scenario');
    IF p_name = 'default' THEN
        RAISE EXCEPTION 'the default scenario is the tenant''s settings'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Change them with reco.set_setting.';
    END IF;
    PERFORM reco.assert_scenario_change_allowed(_tid, p_name, (SELECT s.overrides FROM reco.scenarios s
                                                               WHERE s.tenant_id = _tid AND s.name = p_name), p_overrides);
    INSERT INTO reco.scenarios (tenant_id, name, overrides, description)
    VALUES (_tid, p_name, _overrides, coalesce(p_description, ''))
    ON CONFLICT ON CONSTRAINT scenarios_pkey
        DO UPDATE SET overrides = excluded.overrides, description = excluded.description;
    RETURN _overrides;
END $$;
COMMENT ON FUNCTION reco.upsert_scenario(text, jsonb, text, text) IS
$c$create or change a scenario (a placement): setting overrides on top of the tenant's settings, applied to the
requests that name it (options.scenario, ?scenario= in REST). Example:
SELECT reco.upsert_scenario('onboarding_email', '{"weight_popularity": 0.3, "mmr_lambda": 0.7}');$c$;

CREATE OR REPLACE FUNCTION reco._scenario_overrides(p_tenant_id int, p_scenario text)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _o jsonb;
BEGIN
    IF p_scenario = 'default' THEN
        RETURN '{}';
    END IF;
    SELECT s.overrides INTO _o FROM reco.scenarios s WHERE s.tenant_id = p_tenant_id AND s.name = p_scenario;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown scenario "%"', p_scenario
            USING ERRCODE = 'no_data_found',
                  HINT = format('Create it with SELECT reco.upsert_scenario(%L, ''{}'');', p_scenario);
    END IF;
    RETURN _o;
END $$;

-- ---------------------------------------------------------------------------------------
-- Experiments
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._experiment(p_name text, p_tenant text)
RETURNS reco.experiments
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _e reco.experiments;
BEGIN
    SELECT * INTO _e FROM reco.experiments WHERE tenant_id = reco._tenant_id(p_tenant) AND name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown experiment "%"', p_name
            USING ERRCODE = 'no_data_found', HINT = 'SELECT name, status FROM reco.experiment_list; lists them.';
    END IF;
    RETURN _e;
END $$;

-- the metrics an experiment may name: the built-in ones and the tenant's (reco.metrics)
CREATE OR REPLACE FUNCTION reco.builtin_metrics()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{clicked,click_rate,clicks,exposures,adoption,uses,success_rate}'::text[]
$$;
COMMENT ON FUNCTION reco.builtin_metrics() IS
$c$the metrics every experiment can read (per user, from the first exposure on): clicked (any use of a shown feature
within bandit_window), click_rate (exposures with such a use / exposures, a ratio), clicks, exposures, adoption
(a first use of a feature the user had never used), uses (use events), success_rate (successful / reported
outcomes, a ratio)$c$;

CREATE OR REPLACE FUNCTION reco._check_metrics(p_tenant_id int, p_names text[])
RETURNS text[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _bad text;
BEGIN
    SELECT m INTO _bad FROM unnest(p_names) AS m
    WHERE m IS NULL OR (m <> ALL (reco.builtin_metrics())
                        AND NOT EXISTS (SELECT 1 FROM reco.metrics d WHERE d.tenant_id = p_tenant_id AND d.name = m))
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'unknown metric "%"', _bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Built in: ' || array_to_string(reco.builtin_metrics(), ', ')
                         || '; define others with reco.create_metric.';
    END IF;
    RETURN p_names;
END $$;

CREATE OR REPLACE FUNCTION reco.create_experiment(p_name text, p_variants jsonb, p_options jsonb DEFAULT '{}',
                                                  p_tenant text DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _id int;
    _bad text;
    _v record;
    _oec_metrics text[];
    _overrides jsonb;
BEGIN
    PERFORM reco._check_name(p_name, 'experiment');
    IF p_options IS NULL OR jsonb_typeof(p_options) <> 'object' THEN
        RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'e.g. ''{"scenario": "home", "traffic": 0.5, "primary_metric": "clicked"}''';
    END IF;
    SELECT k INTO _bad FROM jsonb_object_keys(p_options) AS k
    WHERE k NOT IN ('scenario', 'kind', 'traffic', 'salt', 'primary_metric', 'secondary_metrics', 'guardrail_metrics',
                    'oec', 'looks', 'planned_users', 'alpha', 'pre_period', 'description') LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'unknown experiment option "%"', _bad USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Options: scenario, kind, traffic, salt, primary_metric, secondary_metrics, guardrail_metrics, '
                   'oec, looks, planned_users, alpha, pre_period, description.';
    END IF;
    IF p_variants IS NULL OR jsonb_typeof(p_variants) <> 'array' OR jsonb_array_length(p_variants) < 2
       OR jsonb_array_length(p_variants) > 10
       OR jsonb_path_exists(p_variants, '$[*] ? (@.type() != "object" || !exists(@.name))') THEN
        RAISE EXCEPTION 'variants must be an array of 2 to 10 objects with a name'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'e.g. ''[{"name": "control"}, {"name": "more-usercf", "weight": 1, "overrides": {"weight_usercf": 0.3}}]'' (the first is the control)';
    END IF;
    IF (p_options ->> 'scenario') IS NOT NULL THEN
        PERFORM reco._scenario_overrides(_tid, p_options ->> 'scenario');
    END IF;
    _oec_metrics := ARRAY(SELECT jsonb_object_keys(coalesce(p_options -> 'oec', '{}')));
    PERFORM reco._check_metrics(_tid, ARRAY[coalesce(p_options ->> 'primary_metric', 'clicked')]
        || ARRAY(SELECT jsonb_array_elements_text(coalesce(p_options -> 'secondary_metrics', '[]')))
        || ARRAY(SELECT jsonb_array_elements_text(coalesce(p_options -> 'guardrail_metrics', '[]')))
        || _oec_metrics);
    BEGIN
        IF (p_options ->> 'pre_period')::interval NOT BETWEEN interval '0' AND interval '366 days' THEN
            RAISE EXCEPTION 'invalid experiment option: pre_period must be between 0 and 366 days, not %',
                    p_options ->> 'pre_period'
                USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. "14 days" (the CUPED covariate''s window).';
        END IF;
        INSERT INTO reco.experiments (tenant_id, name, scenario, kind, traffic, salt, primary_metric,
                                      secondary_metrics, guardrail_metrics, oec, looks, planned_users, alpha,
                                      pre_period, description)
        VALUES (_tid, p_name, coalesce(p_options ->> 'scenario', 'default'), coalesce(p_options ->> 'kind', 'ab'),
                coalesce((p_options ->> 'traffic')::float8, 1), coalesce(p_options ->> 'salt', p_name),
                coalesce(p_options ->> 'primary_metric', 'clicked'),
                ARRAY(SELECT jsonb_array_elements_text(coalesce(p_options -> 'secondary_metrics', '[]'))),
                ARRAY(SELECT jsonb_array_elements_text(coalesce(p_options -> 'guardrail_metrics', '[]'))),
                coalesce(p_options -> 'oec', '{}'), coalesce((p_options ->> 'looks')::int, 1),
                (p_options ->> 'planned_users')::int, coalesce((p_options ->> 'alpha')::float8, 0.05),
                coalesce((p_options ->> 'pre_period')::interval, '14 days'), coalesce(p_options ->> 'description', ''))
        RETURNING experiment_id INTO _id;
    EXCEPTION
        WHEN unique_violation THEN
            RAISE EXCEPTION 'experiment "%" exists', p_name USING ERRCODE = 'unique_violation',
                HINT = 'Pick another name, or look at it: SELECT * FROM reco.experiment_list;';
        WHEN check_violation OR invalid_text_representation OR datetime_field_overflow OR invalid_datetime_format
             OR numeric_value_out_of_range OR interval_field_overflow THEN
            RAISE EXCEPTION 'invalid experiment option: %', SQLERRM USING ERRCODE = 'invalid_parameter_value',
                HINT = 'kind: ab or interleave; traffic in (0, 1]; looks 1-20; alpha in (0, 0.5); pre_period an interval.';
    END;
    FOR _v IN SELECT v.value AS v, v.ord FROM jsonb_array_elements(p_variants) WITH ORDINALITY AS v(value, ord) LOOP
        PERFORM reco._check_name(_v.v ->> 'name', 'variant');
        _overrides := reco._check_overrides(coalesce(_v.v -> 'overrides', '{}'), format('variant "%s"', _v.v ->> 'name'));
        IF jsonb_typeof(coalesce(_v.v -> 'weight', '1')) <> 'number' OR coalesce((_v.v ->> 'weight')::float8, 1) <= 0 THEN
            RAISE EXCEPTION 'variant "%": weight must be a positive number', _v.v ->> 'name'
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Weights are relative: 1 and 1 split evenly.';
        END IF;
        BEGIN
            INSERT INTO reco.experiment_variants (tenant_id, experiment_id, position, name, weight, overrides)
            VALUES (_tid, _id, _v.ord - 1, _v.v ->> 'name', coalesce((_v.v ->> 'weight')::float8, 1), _overrides);
        EXCEPTION WHEN unique_violation THEN
            RAISE EXCEPTION 'variant "%" is named twice', _v.v ->> 'name'
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Variant names are unique within an experiment.';
        END;
    END LOOP;
    IF (SELECT kind FROM reco.experiments WHERE experiment_id = _id) = 'interleave'
       AND jsonb_array_length(p_variants) <> 2 THEN
        RAISE EXCEPTION 'an interleaving experiment compares exactly 2 variants'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Give a control and one treatment.';
    END IF;
    RETURN _id;
END $$;
COMMENT ON FUNCTION reco.create_experiment(text, jsonb, jsonb, text) IS
$c$create an experiment (status draft): variants (the first is the control) with relative weights and setting
overrides, and options: scenario ('default'), kind ('ab' or 'interleave'), traffic (share of the scenario's
users, 1), salt (the name), primary_metric ('clicked'), secondary_metrics, guardrail_metrics, oec ({metric:
weight}), looks (planned looks, 1), planned_users (in all arms; with it the report decides at the planned looks,
each once on the data of its moment, and says 'stop (no difference)' at the end; without it the report's decision
is an always-valid sequential test that may be read at any time), alpha (0.05), pre_period ('14 days', the CUPED covariate's window). Example:
SELECT reco.create_experiment('usercf-boost', '[{"name": "control"}, {"name": "boost", "overrides": {"weight_usercf": 0.3}}]',
                              '{"scenario": "home", "traffic": 0.5, "guardrail_metrics": ["uses"]}');$c$;

-- what start_experiment returns: the experiment as a reader wants it (not the raw row)
CREATE OR REPLACE FUNCTION reco._started(p_e reco.experiments)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('name', p_e.name, 'status', p_e.status, 'scenario', p_e.scenario,
                              'traffic', p_e.traffic, 'users_from', p_e.ns_start,
                              'users_to', p_e.ns_start + p_e.traffic, 'started_at', p_e.started_at)
$$;
COMMENT ON FUNCTION reco._started(reco.experiments) IS
    'internal: the jsonb reco.start_experiment returns for an experiment row';

-- start_experiment returned the reco.experiments row until 2026-12-08 (a raw tuple in psql):
-- drop that version once; this can go when no database older than that is migrated
DO $$
BEGIN
    IF pg_get_function_result(to_regprocedure('reco.start_experiment(text, text)')) = 'reco.experiments' THEN
        DROP FUNCTION reco.start_experiment(text, text);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION reco.start_experiment(p_name text, p_tenant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _e reco.experiments := reco._experiment(p_name, p_tenant);
    _start float8;
BEGIN
    IF _e.status = 'running' THEN
        RETURN reco._started(_e);
    ELSIF _e.status = 'stopped' THEN
        RAISE EXCEPTION 'experiment "%" is stopped', p_name USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'A stopped experiment is not restarted (its users would mix two periods): create a new one.';
    END IF;
    -- one start at a time per scenario: the slices below are computed from the running ones
    PERFORM pg_advisory_xact_lock(reco.lock_key('experiment_start'), hashtext(_e.tenant_id || '/' || _e.scenario));
    -- the first gap of the scenario's hash space that holds this experiment's traffic
    SELECT g.gap_start INTO _start
    FROM (SELECT coalesce(lag(x.ns_start + x.traffic) OVER (ORDER BY x.ns_start), 0) AS gap_start, x.ns_start AS gap_end
          FROM (SELECT ns_start, traffic FROM reco.experiments
                WHERE tenant_id = _e.tenant_id AND scenario = _e.scenario AND status = 'running'
                UNION ALL SELECT 1, 0) AS x) AS g
    WHERE g.gap_end - g.gap_start >= _e.traffic - 1e-9
    ORDER BY g.gap_start LIMIT 1;
    IF _start IS NULL THEN
        RAISE EXCEPTION 'scenario "%" has no room for % %% of its traffic', _e.scenario, round(_e.traffic * 100)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Experiments running in one scenario split its users without overlap: stop one or lower traffic.';
    END IF;
    UPDATE reco.experiments SET status = 'running', started_at = now(), ns_start = _start
    WHERE experiment_id = _e.experiment_id RETURNING * INTO _e;
    RETURN reco._started(_e);
END $$;
COMMENT ON FUNCTION reco.start_experiment(text, text) IS
$c$start a draft experiment: from now on its share of the scenario's users is served by its variants. Returns
{"name", "status", "scenario", "traffic", "users_from", "users_to", "started_at"}: the slice [users_from, users_to) of
the scenario's hash space its users come from. Example: SELECT reco.start_experiment('usercf-boost');$c$;

CREATE OR REPLACE FUNCTION reco.stop_experiment(p_name text, p_tenant text DEFAULT NULL)
RETURNS reco.experiments
LANGUAGE plpgsql AS $$
DECLARE
    _e reco.experiments := reco._experiment(p_name, p_tenant);
BEGIN
    UPDATE reco.experiments SET status = 'stopped', stopped_at = coalesce(stopped_at, now())
    WHERE experiment_id = _e.experiment_id RETURNING * INTO _e;
    RETURN _e;
END $$;
COMMENT ON FUNCTION reco.stop_experiment(text, text) IS
    'stop an experiment: its users get the scenario''s settings again; the report reads up to the stop';

CREATE OR REPLACE FUNCTION reco.set_variant_weights(p_name text, p_weights jsonb, p_tenant text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    _e reco.experiments := reco._experiment(p_name, p_tenant);
BEGIN
    IF _e.status <> 'draft' THEN
        RAISE EXCEPTION 'experiment "%" is %: its variant weights cannot change', p_name, _e.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Changing the split of a running experiment moves users between variants and biases the comparison; create a new experiment.';
    END IF;
    IF jsonb_typeof(p_weights) <> 'object' OR jsonb_path_exists(p_weights, '$.* ? (@.type() != "number" || @ <= 0)')
       OR EXISTS (SELECT 1 FROM jsonb_object_keys(p_weights) k
                  WHERE NOT EXISTS (SELECT 1 FROM reco.experiment_variants v
                                    WHERE v.experiment_id = _e.experiment_id AND v.name = k)) THEN
        RAISE EXCEPTION 'weights must map the experiment''s variants to positive numbers'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ''{"control": 1, "boost": 2}''';
    END IF;
    UPDATE reco.experiment_variants v SET weight = (p_weights ->> v.name)::float8
    WHERE v.experiment_id = _e.experiment_id AND p_weights ? v.name;
END $$;
COMMENT ON FUNCTION reco.set_variant_weights(text, jsonb, text) IS
    'change the relative weights of a draft experiment''s variants (refused once it runs: that would bias the comparison)';

CREATE OR REPLACE VIEW reco.experiment_list AS
SELECT t.slug AS tenant, e.name, e.scenario, e.kind, e.status, e.traffic, e.primary_metric, e.guardrail_metrics,
       e.looks, e.planned_users, e.started_at, e.stopped_at,
       (SELECT jsonb_agg(jsonb_build_object('name', v.name, 'weight', v.weight, 'overrides', v.overrides)
                         ORDER BY v.position)
        FROM reco.experiment_variants v WHERE v.experiment_id = e.experiment_id) AS variants,
       e.description
FROM reco.experiments e
JOIN reco.tenants t ON t.tenant_id = e.tenant_id;
COMMENT ON VIEW reco.experiment_list IS
    'every experiment: scenario, kind, status, traffic share, metrics, looks, dates and variants (name, weight, overrides)';

-- ---------------------------------------------------------------------------------------
-- Assignment
-- ---------------------------------------------------------------------------------------

-- The experiment and variant a user is in for a scenario (no row: none, the scenario's settings):
-- the scenario's hash places the user in at most one running experiment's slice, the
-- experiment's own hash (its salt) picks the variant by weight.
CREATE OR REPLACE FUNCTION reco._assignment(p_tenant_id int, p_scenario text, p_user_id text)
RETURNS TABLE (experiment_id int, kind text, variant text, side_b text, overrides jsonb, overrides_b jsonb)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _e record;
    _n float8;
    _v float8;
BEGIN
    FOR _e IN SELECT x.experiment_id, x.kind, x.salt, x.ns_start, x.traffic FROM reco.experiments x
              WHERE x.tenant_id = p_tenant_id AND x.scenario = p_scenario AND x.status = 'running' LOOP
        _n := coalesce(_n, reco.bucket(p_tenant_id || ':' || p_scenario || ':', p_user_id));
        CONTINUE WHEN _n < _e.ns_start OR _n >= _e.ns_start + _e.traffic;
        IF _e.kind = 'interleave' THEN
            -- everyone in it sees both lists, interleaved
            RETURN QUERY SELECT _e.experiment_id, _e.kind, a.name, b.name, a.overrides, b.overrides
                FROM reco.experiment_variants a, reco.experiment_variants b
                WHERE a.experiment_id = _e.experiment_id AND a.position = 0
                  AND b.experiment_id = _e.experiment_id AND b.position = 1;
            RETURN;
        END IF;
        _v := reco.bucket(_e.salt, p_user_id);
        RETURN QUERY
            SELECT _e.experiment_id, _e.kind, w.name, NULL::text, w.overrides, NULL::jsonb
            FROM (SELECT v.name, v.overrides, v.position,
                         sum(v.weight) OVER (ORDER BY v.position) / sum(v.weight) OVER () AS upto
                  FROM reco.experiment_variants v WHERE v.experiment_id = _e.experiment_id) AS w
            WHERE w.upto > _v ORDER BY w.position LIMIT 1;
        RETURN;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION reco.assignment(p_user_id text, p_scenario text DEFAULT 'default',
                                           p_tenant text DEFAULT NULL)
RETURNS TABLE (scenario text, experiment text, variant text, settings jsonb)
LANGUAGE sql STABLE AS $$
    SELECT p_scenario, e.name, a.variant,
           reco._scenario_overrides(reco._tenant_id(p_tenant), p_scenario) || coalesce(a.overrides, '{}')
    FROM (SELECT 1) AS one
    LEFT JOIN reco._assignment(reco._tenant_id(p_tenant), p_scenario, p_user_id) AS a ON true
    LEFT JOIN reco.experiments e ON e.experiment_id = a.experiment_id
$$;
COMMENT ON FUNCTION reco.assignment(text, text, text) IS
$c$the experiment and variant a user is in for a scenario (NULL: none) and the setting overrides served to them
(scenario's, then the variant's; an interleaving experiment shows both variants' lists). Writes nothing.
Example: SELECT * FROM reco.assignment('U42', 'home');$c$;
