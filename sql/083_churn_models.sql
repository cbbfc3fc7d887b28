-- Churn, part 2: the jobs (churn_train, churn_score), the model registry's SQL side (register, activate,
-- rollback), scoring with the logistic regression's coefficient rows (set-based and live for one user) and
-- the per-user answer of GET /v1/users/{id}/churn. Training is Python (jobs/churn.py: numpy's logistic
-- regression, LightGBM); under pg_cron it is deferred to `reco jobs loop` like every numpy step.

INSERT INTO reco.jobs (name, procedure, schedule, depends_on, position, description, in_all) VALUES
    ('churn_train', 'reco.job_churn_train', '40 4 * * 1', '{}', 110,
     'churn models (numpy logistic regression; LightGBM on enough rows) trained on rolling snapshots, validated on the newest matured ones; registered in reco.models, the better activated',
     false),
    ('churn_score', 'reco.job_churn_score', '20 5 * * *', '{}', 111,
     'churn probability, tier and reasons of every eligible user with the active model, into reco.churn_scores (logistic: SQL; LightGBM: Python); then the monitoring (drift, AUC on matured labels) may queue churn_train',
     false)
ON CONFLICT (name) DO UPDATE
    SET procedure = excluded.procedure, schedule = excluded.schedule,
        depends_on = excluded.depends_on, position = excluded.position,
        description = excluded.description, in_all = excluded.in_all;

COMMENT ON TABLE reco.models IS
$c$the model registry: one row per trained churn model version of a tenant (kind logistic or lightgbm, the
definitions it was trained with in windows, its features, validation metrics: auc, brier, calibration, the
monitoring bins; params; LightGBM's model in model_blob); at most one active per tenant (reco.activate_model,
reco.rollback_model)$c$;
COMMENT ON TABLE reco.model_coefficients IS
$c$a logistic churn model's terms, one row per feature: p = σ(intercept + Σ coef · (g(x) − mean) / scale), g = ln(1 + x)
for the heavy-tailed features; SQL scores with them (reco.churn_score, reco.churn_score_live)$c$;
COMMENT ON TABLE reco.churn_scores IS
$c$churn scores per scoring day (as_of: the features read the events before it): probability, tier, the top reasons
[{feature, value, contribution}] and the model that scored; the latest as_of is the current score, older days feed
the monitoring (AUC on matured labels)$c$;

-- ---------------------------------------------------------------------------------------
-- Scoring with the logistic regression's rows
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._churn_tier(p_tenant_id int, p_probability float8)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_probability >= reco.setting('churn_tier_high', p_tenant_id)::float8 THEN 'high'
                WHEN p_probability >= reco.setting('churn_tier_medium', p_tenant_id)::float8 THEN 'medium'
                ELSE 'low' END
$$;
COMMENT ON FUNCTION reco._churn_tier(int, float8) IS
    'internal: the churn tier of a probability (settings churn_tier_high, churn_tier_medium)';

-- one user's probability and top reasons: p = σ(intercept + Σ coef · (g(x) − mean) / scale), the reasons the
-- three largest positive terms (what raises the risk most); p_pos: each model feature's place in x
DROP FUNCTION IF EXISTS reco._churn_logistic(float8[], text[], int[], float8[], float8[], float8[], float8);
CREATE OR REPLACE FUNCTION reco._churn_logistic(p_x float8[], p_features text[], p_pos int[], p_mean float8[],
                                                p_scale float8[], p_coef float8[], p_intercept float8,
                                                p_log boolean[])
RETURNS TABLE (probability float8, reasons jsonb)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 1 / (1 + exp(-least(greatest(p_intercept + coalesce(sum(t.contribution), 0), -700), 700))),
           coalesce(jsonb_agg(jsonb_build_object('feature', t.feature, 'value', round(t.value::numeric, 4),
                                                 'contribution', round(t.contribution::numeric, 4))
                              ORDER BY t.contribution DESC) FILTER (WHERE t.rank <= 3 AND t.contribution > 0), '[]')
    FROM (SELECT c.feature, c.value, c.contribution, row_number() OVER (ORDER BY c.contribution DESC) AS rank
          FROM (SELECT f.feature, coalesce(p_x[f.pos], 0) AS value,
                       f.coef * (CASE WHEN f.lg THEN ln(1 + greatest(coalesce(p_x[f.pos], 0), 0))
                                      ELSE coalesce(p_x[f.pos], 0) END - f.mean) / f.scale AS contribution
                FROM unnest(p_features, p_pos, p_mean, p_scale, p_coef, p_log)
                     AS f(feature, pos, mean, scale, coef, lg)) AS c) AS t
$$;
COMMENT ON FUNCTION reco._churn_logistic(float8[], text[], int[], float8[], float8[], float8[], float8, boolean[]) IS
    'internal: a logistic churn model''s probability and top-3 reasons (coef · z) for one feature row';

-- a logistic model's terms as arrays, each feature's place in today's reco.churn_feature_names()
DROP FUNCTION IF EXISTS reco._churn_terms(int) CASCADE;
CREATE OR REPLACE FUNCTION reco._churn_terms(p_model_id int)
RETURNS TABLE (features text[], pos int[], mean float8[], scale float8[], coef float8[], intercept float8,
               log boolean[])
LANGUAGE sql STABLE AS $$
    SELECT array_agg(c.feature ORDER BY c.feature), array_agg(array_position(reco.churn_feature_names(), c.feature)
                                                              ORDER BY c.feature),
           array_agg(c.mean ORDER BY c.feature), array_agg(c.scale ORDER BY c.feature),
           array_agg(c.coef ORDER BY c.feature),
           (SELECT (m.params ->> 'intercept')::float8 FROM reco.models m WHERE m.model_id = p_model_id),
           array_agg(c.feature = ANY (reco._churn_log_features()) ORDER BY c.feature)
    FROM reco.model_coefficients c WHERE c.model_id = p_model_id
$$;
COMMENT ON FUNCTION reco._churn_terms(int) IS 'internal: a logistic churn model''s coefficient rows as arrays';

-- score every eligible user of a tenant at p_as_of with a logistic model, replacing that day's scores
CREATE OR REPLACE FUNCTION reco._churn_score_logistic(p_tenant_id int, p_model_id int, p_as_of date)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _t record;
    _n bigint;
    _high float8 := reco.setting('churn_tier_high', p_tenant_id)::float8;
    _medium float8 := reco.setting('churn_tier_medium', p_tenant_id)::float8;
BEGIN
    SELECT * INTO _t FROM reco._churn_terms(p_model_id);
    DELETE FROM reco.churn_scores WHERE tenant_id = p_tenant_id AND as_of = p_as_of;
    INSERT INTO reco.churn_scores (tenant_id, as_of, user_key, model_id, probability, tier, reasons)
    SELECT p_tenant_id, p_as_of, m.user_key, p_model_id, s.probability,
           CASE WHEN s.probability >= _high THEN 'high' WHEN s.probability >= _medium THEN 'medium' ELSE 'low' END,
           s.reasons
    FROM reco._churn_matrix(p_tenant_id, ARRAY[p_as_of]) AS m
    CROSS JOIN LATERAL reco._churn_logistic(m.x, _t.features, _t.pos, _t.mean, _t.scale, _t.coef, _t.intercept, _t.log) AS s;
    GET DIAGNOSTICS _n = ROW_COUNT;
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco._churn_score_logistic(int, int, date) IS
    'internal: score every eligible user at p_as_of with a logistic churn model into reco.churn_scores (that day replaced)';

CREATE OR REPLACE FUNCTION reco._churn_active(p_tenant_id int)
RETURNS reco.models
LANGUAGE sql STABLE AS $$
    SELECT m FROM reco.models m WHERE m.tenant_id = p_tenant_id AND m.purpose = 'churn' AND m.active
$$;
COMMENT ON FUNCTION reco._churn_active(int) IS 'internal: the tenant''s active churn model (NULL: none)';

-- the day scoring reads up to by default: the day after the newest event (its events included)
CREATE OR REPLACE FUNCTION reco._churn_score_day(p_tenant_id int)
RETURNS date
LANGUAGE sql STABLE AS $$
    SELECT reco._churn_data_end(p_tenant_id) + 1
$$;
COMMENT ON FUNCTION reco._churn_score_day(int) IS
    'internal: the as_of churn_score uses by default: the day after the tenant''s newest event';

CREATE OR REPLACE FUNCTION reco.churn_score(p_as_of date DEFAULT NULL, p_tenant text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _m reco.models := reco._churn_active(_tid);
BEGIN
    IF _m.model_id IS NULL THEN
        RAISE EXCEPTION 'tenant "%" has no active churn model', coalesce(p_tenant, 'default')
            USING ERRCODE = 'no_data_found',
                  HINT = 'Train one: `reco churn train` (or CALL reco.run_job(''churn_train'') then `reco jobs loop`).';
    ELSIF _m.kind <> 'logistic' THEN
        RAISE EXCEPTION 'the active churn model (version %) is %: SQL scores only logistic models', _m.version, _m.kind
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Score from Python: `reco churn score`; or activate a logistic version: SELECT reco.activate_model(tenant, version);';
    END IF;
    RETURN reco._churn_score_logistic(_tid, _m.model_id, coalesce(p_as_of, reco._churn_score_day(_tid)));
END $$;
COMMENT ON FUNCTION reco.churn_score(date, text) IS
$c$score every eligible user of a tenant with its active churn model (logistic: computed here from its coefficient
rows) as of a day (default: the day after the newest event), into reco.churn_scores (that day's rows replaced);
returns the users scored. A LightGBM model is scored by `reco churn score` (Python). Example:
SELECT reco.churn_score();  -- 18250$c$;

-- ---------------------------------------------------------------------------------------
-- Jobs
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.job_churn_train(p_tenant_id int)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _slug text := (SELECT slug FROM reco.tenants WHERE tenant_id = p_tenant_id);
    _done jsonb;
    _m reco.models := reco._churn_active(p_tenant_id);
BEGIN
    IF reco._python_step('churn_train') THEN
        -- jobs/churn.py trained just before, in this session; what it did is in reco.churn_train_done
        _done := nullif(current_setting('reco.churn_train_done', true), '')::jsonb -> _slug;
        IF _done ? 'error' THEN
            RAISE EXCEPTION '%', _done ->> 'error' USING ERRCODE = 'data_exception', HINT = _done ->> 'hint';
        END IF;
        PERFORM set_config('reco.job_message', coalesce(_done ->> 'message', ''), true);
        RETURN (_done ->> 'rows')::bigint;
    END IF;
    PERFORM reco._defer(p_tenant_id, 'churn_train', format(
        'churn training needs Python (numpy, LightGBM): queued for `reco jobs loop`; %s',
        CASE WHEN _m.model_id IS NULL THEN 'no churn model is active yet'
             ELSE format('scores keep model version %s (%s, trained %s)', _m.version, _m.kind,
                         to_char(_m.trained_at, 'YYYY-MM-DD HH24:MI')) END));
    RETURN 0;
END $$;
COMMENT ON FUNCTION reco.job_churn_train(int) IS
$c$job body of churn_train: training is Python (jobs/churn.py, run by `reco jobs run churn_train`, `reco churn train`
or `reco jobs loop`); under pg_cron the run is logged deferred and queued for the loop, the active model kept.$c$;

CREATE OR REPLACE FUNCTION reco.job_churn_score(p_tenant_id int)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _slug text := (SELECT slug FROM reco.tenants WHERE tenant_id = p_tenant_id);
    _m reco.models := reco._churn_active(p_tenant_id);
    _done jsonb;
    _n bigint;
    _day date;
BEGIN
    IF _m.model_id IS NULL THEN
        PERFORM set_config('reco.job_message', 'no active churn model: nothing scored (train one: churn_train)', true);
        RETURN 0;
    END IF;
    IF reco._python_step('churn_score') THEN
        _done := nullif(current_setting('reco.churn_score_done', true), '')::jsonb -> _slug;
        _n := (_done ->> 'rows')::bigint;
        _day := (_done ->> 'as_of')::date;
    ELSIF _m.kind = 'logistic' THEN
        _day := reco._churn_score_day(p_tenant_id);
        _n := reco._churn_score_logistic(p_tenant_id, _m.model_id, _day);
    ELSE
        PERFORM reco._defer(p_tenant_id, 'churn_score', format(
            'the active churn model (version %s) is LightGBM, scored in Python: queued for `reco jobs loop`; '
            'the scores of %s stay the latest', _m.version,
            coalesce((SELECT max(as_of)::text FROM reco.churn_scores WHERE tenant_id = p_tenant_id), 'no day')));
        RETURN 0;
    END IF;
    PERFORM set_config('reco.job_message', format('%s users scored as of %s with model version %s (%s)%s',
                                                  _n, _day, _m.version, _m.kind,
                                                  coalesce('; ' || reco._churn_retrain_check(p_tenant_id), '')), true);
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco.job_churn_score(int) IS
$c$job body of churn_score: every eligible user scored with the active model (logistic in SQL; LightGBM in Python,
deferred to `reco jobs loop` under pg_cron), then reco._churn_retrain_check (drift, AUC decay) may queue churn_train.$c$;

-- ---------------------------------------------------------------------------------------
-- Registry
-- ---------------------------------------------------------------------------------------

-- a trained model (jobs/churn.py): the next version, its coefficient rows (logistic), optionally activated
CREATE OR REPLACE FUNCTION reco._churn_register(p_tenant_id int, p_kind text, p_windows jsonb, p_features text[],
                                                p_metrics jsonb, p_params jsonb, p_blob bytea, p_coefficients jsonb)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    _id int;
    _version int;
BEGIN
    PERFORM pg_advisory_xact_lock(reco.lock_key('churn_models'), p_tenant_id);
    _version := coalesce((SELECT max(version) FROM reco.models WHERE tenant_id = p_tenant_id AND purpose = 'churn'), 0) + 1;
    INSERT INTO reco.models (tenant_id, purpose, version, kind, windows, features, metrics, params, model_blob)
    VALUES (p_tenant_id, 'churn', _version, p_kind, p_windows, p_features, p_metrics, p_params, p_blob)
    RETURNING model_id INTO _id;
    INSERT INTO reco.model_coefficients (tenant_id, model_id, feature, mean, scale, coef)
    SELECT p_tenant_id, _id, c ->> 'feature', (c ->> 'mean')::float8, (c ->> 'scale')::float8, (c ->> 'coef')::float8
    FROM jsonb_array_elements(coalesce(p_coefficients, '[]')) AS c;
    RETURN _version;
END $$;
COMMENT ON FUNCTION reco._churn_register(int, text, jsonb, text[], jsonb, jsonb, bytea, jsonb) IS
    'internal: register a trained churn model as the tenant''s next version (coefficient rows for a logistic one)';

CREATE OR REPLACE FUNCTION reco.activate_model(p_tenant text, p_version int)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _m reco.models;
    _old reco.models;
BEGIN
    PERFORM pg_advisory_xact_lock(reco.lock_key('churn_models'), _tid);
    SELECT * INTO _m FROM reco.models WHERE tenant_id = _tid AND purpose = 'churn' AND version = p_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tenant "%" has no churn model version %', p_tenant, p_version
            USING ERRCODE = 'no_data_found',
                  HINT = 'SELECT version, kind, active, metrics ->> ''auc'' FROM reco.churn_models(tenant); lists them.';
    END IF;
    _old := reco._churn_active(_tid);
    UPDATE reco.models SET active = false WHERE tenant_id = _tid AND purpose = 'churn' AND active AND version <> p_version;
    UPDATE reco.models SET active = true, activated_at = clock_timestamp() WHERE model_id = _m.model_id;
    RETURN jsonb_build_object('version', _m.version, 'kind', _m.kind, 'previous', _old.version);
END $$;
COMMENT ON FUNCTION reco.activate_model(text, int) IS
$c$make a churn model version the tenant's active one (scoring and the live score use it); returns
{version, kind, previous}. Example: SELECT reco.activate_model('default', 3);  -- {"kind": "logistic", "version": 3, "previous": 4}$c$;

CREATE OR REPLACE FUNCTION reco.rollback_model(p_tenant text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _cur reco.models := reco._churn_active(_tid);
    _prev int;
BEGIN
    IF _cur.model_id IS NULL THEN
        RAISE EXCEPTION 'tenant "%" has no active churn model to roll back', p_tenant
            USING ERRCODE = 'no_data_found', HINT = 'SELECT reco.activate_model(tenant, version); activates one.';
    END IF;
    SELECT max(version) INTO _prev FROM reco.models
    WHERE tenant_id = _tid AND purpose = 'churn' AND version < _cur.version AND activated_at IS NOT NULL;
    IF _prev IS NULL THEN
        RAISE EXCEPTION 'no churn model version before % of tenant "%" was ever active', _cur.version, p_tenant
            USING ERRCODE = 'no_data_found',
                  HINT = 'SELECT reco.activate_model(tenant, version); activates any version.';
    END IF;
    RETURN reco.activate_model(p_tenant, _prev);
END $$;
COMMENT ON FUNCTION reco.rollback_model(text) IS
$c$activate the newest churn model version below the active one that was active before (again: one further back);
returns {version, kind, previous}. Example: SELECT reco.rollback_model('default');  -- {"version": 2, "previous": 3, ...}$c$;

CREATE OR REPLACE FUNCTION reco.churn_models(p_tenant text DEFAULT NULL)
RETURNS TABLE (version int, kind text, active boolean, trained_at timestamptz, activated_at timestamptz,
               auc float8, brier float8, train_rows bigint, validation_rows bigint, note text)
LANGUAGE sql STABLE AS $$
    SELECT m.version, m.kind, m.active, m.trained_at, m.activated_at, (m.metrics ->> 'auc')::float8,
           (m.metrics ->> 'brier')::float8, (m.metrics ->> 'train_rows')::bigint,
           (m.metrics ->> 'validation_rows')::bigint, m.note
    FROM reco.models m
    WHERE m.tenant_id = reco._tenant_id(p_tenant) AND m.purpose = 'churn'
    ORDER BY m.version
$$;
COMMENT ON FUNCTION reco.churn_models(text) IS
$c$the tenant's churn model versions with their validation AUC and Brier score (the time split), which is active.
Example: SELECT * FROM reco.churn_models('default');  -- 1 | logistic | f | ... | 0.81 | 0.14 | ...$c$;

-- ---------------------------------------------------------------------------------------
-- Live score and the REST answer
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.churn_score_live(p_tenant text, p_user text, p_as_of date DEFAULT NULL)
RETURNS TABLE (probability float8, tier text, reasons jsonb, model_version int, kind text, as_of date)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _user int;
    _m reco.models;
    _day date := coalesce(p_as_of, current_date + 1);
    _x float8[];
    _t record;
BEGIN
    SELECT u.user_key INTO _user FROM reco.users u WHERE u.tenant_id = _tid AND u.user_id = p_user;
    IF _user IS NULL THEN
        RAISE EXCEPTION 'unknown user "%"', p_user USING ERRCODE = 'no_data_found',
            HINT = 'Users are created by their first event (reco.ingest_events) or reco.upsert_users.';
    END IF;
    -- the active model when logistic, else the newest logistic version (trained alongside every LightGBM one)
    SELECT * INTO _m FROM reco.models m
    WHERE m.tenant_id = _tid AND m.purpose = 'churn' AND m.kind = 'logistic'
    ORDER BY m.active DESC, m.version DESC LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tenant "%" has no logistic churn model', coalesce(p_tenant, 'default')
            USING ERRCODE = 'no_data_found', HINT = 'Train one: `reco churn train`.';
    END IF;
    SELECT m.x INTO _x FROM reco._churn_matrix(_tid, ARRAY[_day], _user) AS m;
    IF _x IS NULL THEN
        RAISE EXCEPTION 'user "%" is not scored: no activity before %, or a history shorter than churn_min_history_days',
                p_user, _day
            USING ERRCODE = 'no_data_found', HINT = 'A user is scored from churn_min_history_days after its first activity.';
    END IF;
    SELECT * INTO _t FROM reco._churn_terms(_m.model_id);
    RETURN QUERY
    SELECT s.probability, reco._churn_tier(_tid, s.probability), s.reasons, _m.version, _m.kind, _day
    FROM reco._churn_logistic(_x, _t.features, _t.pos, _t.mean, _t.scale, _t.coef, _t.intercept, _t.log) AS s;
END $$;
COMMENT ON FUNCTION reco.churn_score_live(text, text, date) IS
$c$one user's churn probability, tier and top reasons computed now in SQL from its events before p_as_of (default:
tomorrow, i.e. every event so far) and the coefficient rows of the active logistic model (if a LightGBM model is
active: the newest logistic version). Example:
SELECT * FROM reco.churn_score_live('default', 'u1');  -- 0.83 | high | [{"feature": "recency_days", ...}] | 4 | logistic | ...$c$;

CREATE OR REPLACE FUNCTION reco.user_churn(p_user text, p_tenant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _r jsonb;
BEGIN
    IF p_user IS NULL OR length(p_user) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'user_id must be 1-200 characters' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'field: user_id';
    END IF;
    SELECT jsonb_build_object('user_id', u.user_id, 'probability', round(s.probability::numeric, 4), 'tier', s.tier,
                              'reasons', s.reasons, 'model_version', m.version, 'model_kind', m.kind,
                              'as_of', s.as_of, 'scored_at', s.scored_at, 'source', 'scores')
    INTO _r
    FROM reco.users u
    JOIN reco.churn_scores s ON s.tenant_id = _tid AND s.user_key = u.user_key
    JOIN reco.models m ON m.model_id = s.model_id
    WHERE u.tenant_id = _tid AND u.user_id = p_user
    ORDER BY s.as_of DESC LIMIT 1;
    IF _r IS NOT NULL THEN
        RETURN _r;
    END IF;
    -- never scored by the job (new since, or no scoring yet): the live score
    SELECT jsonb_build_object('user_id', p_user, 'probability', round(l.probability::numeric, 4), 'tier', l.tier,
                              'reasons', l.reasons, 'model_version', l.model_version, 'model_kind', l.kind,
                              'as_of', l.as_of, 'scored_at', now(), 'source', 'live')
    INTO _r FROM reco.churn_score_live(p_tenant, p_user) AS l;
    RETURN _r;
END $$;
COMMENT ON FUNCTION reco.user_churn(text, text) IS
$c$the body of GET /v1/users/{id}/churn: the user's latest stored churn score (probability, tier, reasons, model
version and kind, as_of), else its live score (reco.churn_score_live); no_data_found for an unknown or unscorable
user. Example: SELECT reco.user_churn('u1', 'default');  -- {"tier": "high", "probability": 0.83, ...}$c$;

-- ---------------------------------------------------------------------------------------
-- The Python steps' entry points (jobs/churn.py, reco bench churn): public, documented names over the
-- internal helpers above, taking the tenant's slug
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.churn_training_rows(p_tenant text DEFAULT NULL, p_until date DEFAULT NULL)
RETURNS TABLE (as_of date, role text, user_key int, x float8[], churned boolean)
LANGUAGE sql STABLE AS $$
    SELECT * FROM reco._churn_training_rows(p_tenant, p_until)
$$;
COMMENT ON FUNCTION reco.churn_training_rows(text, date) IS
$c$the rows churn_train fits on: every eligible user at each matured snapshot day (reco.churn_snapshots), role
'train' or 'validation' (the newest matured days), the feature vector x in the order of reco.churn_feature_names()
and the label (no activity in the churn window after the day); p_until: only snapshots whose window ends by then.
Example: SELECT role, count(*), avg(churned::int) FROM reco.churn_training_rows() GROUP BY role;$c$;

CREATE OR REPLACE FUNCTION reco.churn_log_features()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT reco._churn_log_features()
$$;
COMMENT ON FUNCTION reco.churn_log_features() IS
$c$the churn features a logistic model takes as log(1 + x) (counts and days: long tails). Example:
SELECT reco.churn_log_features();$c$;

CREATE OR REPLACE FUNCTION reco.churn_matrix(p_tenant text, p_days date[], p_user int DEFAULT NULL)
RETURNS TABLE (as_of date, user_key int, x float8[])
LANGUAGE sql STABLE AS $$
    SELECT * FROM reco._churn_matrix(reco._tenant_id(p_tenant), p_days, p_user)
$$;
COMMENT ON FUNCTION reco.churn_matrix(text, date[], int) IS
$c$the churn features of every user (or user key p_user) as of each day in p_days, one array per user and day in
the order of reco.churn_feature_names() (what reco.churn_features shows by name; events before the day only).
Example: SELECT count(*) FROM reco.churn_matrix('default', ARRAY[current_date]);$c$;

CREATE OR REPLACE FUNCTION reco.churn_score_day(p_tenant text DEFAULT NULL)
RETURNS date
LANGUAGE sql STABLE AS $$
    SELECT reco._churn_score_day(reco._tenant_id(p_tenant))
$$;
COMMENT ON FUNCTION reco.churn_score_day(text) IS
$c$the day churn_score scores as of: the day after the tenant's last event. Example:
SELECT reco.churn_score_day();$c$;

CREATE OR REPLACE FUNCTION reco.churn_register(p_tenant text, p_kind text, p_windows jsonb, p_features text[],
                                               p_metrics jsonb, p_params jsonb, p_blob bytea, p_coefficients jsonb)
RETURNS int
LANGUAGE sql AS $$
    SELECT reco._churn_register(reco._tenant_id(p_tenant), p_kind, p_windows, p_features, p_metrics, p_params, p_blob,
                                p_coefficients)
$$;
COMMENT ON FUNCTION reco.churn_register(text, text, jsonb, text[], jsonb, jsonb, bytea, jsonb) IS
$c$register a trained churn model as the tenant's next version (not active; reco.activate_model activates it):
p_coefficients [{feature, mean, scale, coef}] become reco.model_coefficients rows; returns the version. What
churn_train calls. Example:
SELECT reco.churn_register('default', 'logistic', '{}', '{recency_days}', '{}', '{"intercept": 0}', NULL,
                           '[{"feature": "recency_days", "mean": 0, "scale": 1, "coef": 1}]');  -- 3$c$;

CREATE OR REPLACE FUNCTION reco.churn_model_scores(p_model_id int, p_as_of date)
RETURNS TABLE (user_key int, probability float8, reasons jsonb)
LANGUAGE sql STABLE AS $$
    SELECT f.user_key, s.probability, s.reasons
    FROM reco.models m
    CROSS JOIN LATERAL reco._churn_matrix(m.tenant_id, ARRAY[p_as_of]) AS f
    CROSS JOIN LATERAL (SELECT * FROM reco._churn_terms(m.model_id)) AS t
    CROSS JOIN LATERAL reco._churn_logistic(f.x, t.features, t.pos, t.mean, t.scale, t.coef, t.intercept, t.log) AS s
    WHERE m.model_id = p_model_id AND m.kind = 'logistic'
$$;
COMMENT ON FUNCTION reco.churn_model_scores(int, date) IS
$c$every user's churn probability and reasons under one logistic model version (active or not) as of a day, from
its coefficient rows, without storing them (compare versions before activating one). Example:
SELECT avg(probability) FROM reco.churn_model_scores(12, current_date);$c$;
