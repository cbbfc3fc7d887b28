-- Self-tuning per tenant: the tune job searches the neighbour model, K, the decay τ, the component
-- weights, the seen handling and MMR λ on a time-based holdout of the tenant's own data (an
-- evaluation scope, sql/060_evaluation.sql), records every trial as an evaluation run of kind
-- 'tune', and applies the best when it beats the tenant's current settings by more than the noise.
-- A stage whose best gains by less than that is measured again on a second fold (the adoption
-- before the latest held out) and decided on the pooled gain (reco._tune_pending, _tune_keep_best).
--
--   reco.tune(tenant, users, apply)   the whole search in SQL (CALL reco.run_job('tune'), pg_cron):
--                                     every model but EASE, which needs numpy
--   `reco tune` (app/tune.py)         the same stages from Python, EASE trials included
--
-- Sync contract: the stages are reco._tune_stages(); their candidates reco._tune_plan(); a trial
-- is reco._tune_trial(); app/tune.py walks the same stages with the same functions.

INSERT INTO reco.setting_definitions (key, default_value, description) VALUES
    ('tune_min_gain', '1',
     'the tune job applies the best trial when its NDCG@10 gain over the current settings exceeds this many standard errors of the per-user paired difference: 1 = more than the noise of the estimate (≈ 84 % one-sided); 2 ≈ 98 %, for tenants that want changes only on strong evidence')
ON CONFLICT (key) DO UPDATE
    SET default_value = excluded.default_value, description = excluded.description;

INSERT INTO reco.jobs (name, procedure, schedule, depends_on, position, description, in_all) VALUES
    ('tune', 'reco.job_tune', '30 5 * * 0', '{}', 101,
     'search neighbour model, K, τ, weights, seen handling and MMR λ on a holdout of the tenant''s data; apply the best when it beats the current settings by more than the noise (EASE only from Python: queued for `reco jobs loop`)',
     false)
ON CONFLICT (name) DO UPDATE
    SET procedure = excluded.procedure, schedule = excluded.schedule,
        depends_on = excluded.depends_on, position = excluded.position,
        description = excluded.description, in_all = excluded.in_all;

CREATE OR REPLACE FUNCTION reco._tune_stages()
RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT '{model,tau,weights,seen,mmr}'::text[]
$$;

-- The trials of one tune with their NDCG@10 on the holdout.
CREATE OR REPLACE FUNCTION reco.tune_trials_of(p_tune text)
RETURNS TABLE (run_id bigint, stage text, options jsonb, ndcg float8)
LANGUAGE sql STABLE AS $$
    SELECT r.run_id, r.options ->> 'stage', r.options, x.ndcg
    FROM reco.evaluation_runs r JOIN reco.evaluation_results x ON x.run_id = r.run_id AND x.model = 'hybrid'
    WHERE r.kind = 'tune' AND r.options ->> 'tune' = p_tune
$$;
COMMENT ON FUNCTION reco.tune_trials_of(text) IS
    'the trials of one tune (its id is in reco.tune_trials.tune and in the summary reco.tune returns), with NDCG@10';

-- The candidate settings of one stage, each a JSON object of settings (the rest stay as they are
-- in the scope: the best of the stages before). A coordinate search: each stage varies one group.
CREATE OR REPLACE FUNCTION reco._tune_plan(p_stage text)
RETURNS SETOF jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT c FROM (VALUES
        ('model', '{"neighbor_model": "cosine", "neighbors_k": 20, "neighbor_shrinkage": 0}'::jsonb),
        ('model', '{"neighbor_model": "cosine", "neighbors_k": 50, "neighbor_shrinkage": 0}'),
        ('model', '{"neighbor_model": "cosine", "neighbors_k": 100, "neighbor_shrinkage": 10}'),
        ('model', '{"neighbor_model": "rp3beta", "neighbors_k": 50, "rp3_alpha": 1.0, "rp3_beta": 0.3}'),
        ('model', '{"neighbor_model": "rp3beta", "neighbors_k": 100, "rp3_alpha": 1.0, "rp3_beta": 0.3}'),
        ('model', '{"neighbor_model": "rp3beta", "neighbors_k": 100, "rp3_alpha": 0.5, "rp3_beta": 0.5}'),
        ('model', '{"neighbor_model": "ease", "neighbors_k": 20, "ease_lambda": 250}'),
        ('model', '{"neighbor_model": "ease", "neighbors_k": 20, "ease_lambda": 500}'),
        ('model', '{"neighbor_model": "ease", "neighbors_k": 50, "ease_lambda": 250}'),
        ('model', '{"neighbor_model": "ease", "neighbors_k": 50, "ease_lambda": 500}'),
        ('model', '{"neighbor_model": "ease", "neighbors_k": 100, "ease_lambda": 250}'),
        ('model', '{"neighbor_model": "ease", "neighbors_k": 100, "ease_lambda": 500}'),
        ('tau', '{"decay_tau_days": 3}'),
        ('tau', '{"decay_tau_days": 14}'),
        ('tau', '{"decay_tau_days": 60}'),
        ('tau', '{"decay_tau_days": 365}'),
        ('weights', '{"weight_itemcf": 1, "weight_usercf": 0, "weight_prior": 0, "weight_popularity": 0}'),
        ('weights', '{"weight_itemcf": 0.9, "weight_usercf": 0.05, "weight_prior": 0.01, "weight_popularity": 0.04}'),
        ('weights', '{"weight_itemcf": 0.8, "weight_usercf": 0.1, "weight_prior": 0.05, "weight_popularity": 0.05}'),
        ('weights', '{"weight_itemcf": 0.7, "weight_usercf": 0.2, "weight_prior": 0.02, "weight_popularity": 0.08}'),
        ('weights', '{"weight_itemcf": 0.5, "weight_usercf": 0.3, "weight_prior": 0.1, "weight_popularity": 0.1}'),
        ('seen', '{"seen_factor": 0}'),
        ('seen', '{"seen_factor": 0.2}'),
        ('mmr', '{"mmr_lambda": 1}'),
        ('mmr', '{"mmr_lambda": 0.9}'),
        ('mmr', '{"mmr_lambda": 0.8}')
    ) AS t(stage, c)
    WHERE t.stage = p_stage
$$;
COMMENT ON FUNCTION reco._tune_plan(text) IS
    'internal: the candidate settings the tune job tries in a stage (model, tau, weights, seen, mmr)';

-- Whether a trial's settings need numpy (EASE): the SQL tune skips those, `reco tune` computes them.
CREATE OR REPLACE FUNCTION reco._tune_needs_python(p_settings jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(p_settings ->> 'neighbor_model' = 'ease', false)
$$;

-- Per-user NDCG@10 of every trial of a tune (session-local: the trials are compared pairwise).
CREATE OR REPLACE FUNCTION reco._tune_begin()
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DROP TABLE IF EXISTS pg_temp._tune_scores;
    CREATE TEMP TABLE _tune_scores (run_id bigint, user_key int, ndcg float8, PRIMARY KEY (run_id, user_key));
END $$;

-- A trial's full settings for its stage: the values of every setting the stage varies, as in the
-- trial kept so far (at first the baseline), overridden by the trial's own. So a trial changes only
-- what it names: an EASE trial after an RP3beta one does not carry RP3beta's α and β along.
CREATE OR REPLACE FUNCTION reco._tune_settings(p_tune text, p_stage text, p_settings jsonb)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT jsonb_object_agg(k.key, r.settings -> k.key)
                     FROM reco.evaluation_runs r
                     CROSS JOIN (SELECT DISTINCT jsonb_object_keys(c) AS key FROM reco._tune_plan(p_stage) AS c) AS k
                     WHERE r.run_id = (SELECT t.run_id FROM reco.tune_trials_of(p_tune) t
                                       WHERE t.stage = 'baseline' OR coalesce((t.options ->> 'kept')::boolean, false)
                                       ORDER BY t.run_id DESC LIMIT 1)), '{}') || p_settings
$$;

-- Make p_settings the scope's settings again and rebuild what they change (no ranking).
CREATE OR REPLACE FUNCTION reco._tune_restore(p_scope int, p_settings jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    _slug text := (SELECT slug FROM reco.tenants WHERE tenant_id = p_scope);
    _changed text[] := ARRAY(SELECT k FROM jsonb_object_keys(p_settings) AS k
                             WHERE reco.setting(k, p_scope) IS DISTINCT FROM p_settings -> k);
    _key text;
BEGIN
    FOREACH _key IN ARRAY _changed LOOP
        PERFORM reco.set_setting(_key, p_settings -> _key, _slug);
    END LOOP;
    IF 'decay_tau_days' = ANY (_changed) THEN
        PERFORM reco._interactions_from_events((SELECT evaluation_of FROM reco.tenants WHERE tenant_id = p_scope),
                                               p_scope);
        PERFORM reco.job_embeddings(p_scope);
    END IF;
    IF _changed && '{neighbor_model,neighbors_k,neighbor_shrinkage,rp3_alpha,rp3_beta,ease_lambda}'::text[] THEN
        PERFORM reco.job_feature_neighbors(p_scope);
    END IF;
END $$;

-- One trial: set p_settings in the scope, rebuild what they change (τ: the interactions and the
-- user vectors; a neighbour setting: the neighbours), rank the held-out users with the hybrid as
-- served (seen features excluded, except in the 'seen' stage, which measures the seen handling),
-- store the run (kind 'tune') and the per-user NDCG; returns the run id.
CREATE OR REPLACE FUNCTION reco._tune_trial(p_scope int, p_tune text, p_stage text, p_settings jsonb)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _slug text := (SELECT slug FROM reco.tenants WHERE tenant_id = p_scope AND evaluation_of IS NOT NULL);
    _started timestamptz := clock_timestamp();
    _run bigint;
BEGIN
    IF _slug IS NULL THEN
        RAISE EXCEPTION 'tenant % is not an evaluation scope', p_scope
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Create one with reco._evaluation_scope.';
    END IF;
    -- the trial's name first, then the steps that rebuild the scope for it
    PERFORM reco._progress('tune', (SELECT evaluation_of FROM reco.tenants WHERE tenant_id = p_scope),
                           format('%s: %s', p_stage, p_settings));
    PERFORM reco._tune_restore(p_scope, reco._tune_settings(p_tune, p_stage, p_settings));
    PERFORM reco._evaluation_rank(p_scope, 'hybrid', 10, NULL, NULL,
                                  CASE WHEN p_stage = 'seen' THEN '{"exclude_seen": false}'::jsonb ELSE '{}' END);
    _run := reco._evaluation_record(p_scope, 'tune', 10,
                                    jsonb_build_object('tune', p_tune, 'stage', p_stage, 'trial', p_settings),
                                    _started);
    DELETE FROM reco.evaluation_results WHERE run_id = _run AND model <> 'hybrid';
    INSERT INTO _tune_scores (run_id, user_key, ndcg)
    SELECT _run, r.user_key, coalesce(1.0 / log(2.0, r.hit_rank + 1.0), 0)
    FROM reco.evaluation_ranks r WHERE r.tenant_id = p_scope AND r.model = 'hybrid';
    RETURN _run;
END $$;
COMMENT ON FUNCTION reco._tune_trial(int, text, text, jsonb) IS
    'internal: one trial of the tune job in an evaluation scope; returns its evaluation run id (kind tune)';

-- The paired per-user difference of NDCG@10 between trials of this session's tune (p_to minus
-- p_from), pooled over folds: p_from[i] and p_to[i] were ranked in the same evaluation scope (one
-- scope per fold; the folds hold the same users under the same keys), each user's difference is
-- averaged over the folds that hold the user. Its mean, its standard error and the users compared.
CREATE OR REPLACE FUNCTION reco._tune_gain(p_from bigint[], p_to bigint[])
RETURNS TABLE (gain float8, se float8, users int)
-- plpgsql: the session's table of scores exists only while a tune runs (reco._tune_begin)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT avg(d.diff), stddev_samp(d.diff) / sqrt(count(*)), count(*)::int
    FROM (SELECT a.user_key, avg(b.ndcg - a.ndcg) AS diff
          FROM unnest(p_from, p_to) AS f(run_from, run_to)
          JOIN _tune_scores a ON a.run_id = f.run_from
          JOIN _tune_scores b ON b.run_id = f.run_to AND b.user_key = a.user_key
          GROUP BY a.user_key) AS d;
END $$;

CREATE OR REPLACE FUNCTION reco._tune_gain(p_from bigint, p_to bigint)
RETURNS TABLE (gain float8, se float8, users int)
LANGUAGE sql STABLE AS $$
    SELECT * FROM reco._tune_gain(ARRAY[p_from], ARRAY[p_to])
$$;

-- Every setting the tune searches, as in force in trial p_run (what a second fold must be set to,
-- to measure that trial there).
CREATE OR REPLACE FUNCTION reco._tune_full_settings(p_run bigint)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_object_agg(k.key, r.settings -> k.key)
    FROM reco.evaluation_runs r
    CROSS JOIN (SELECT DISTINCT jsonb_object_keys(c) AS key
                FROM unnest(reco._tune_stages()) AS st(stage) CROSS JOIN LATERAL reco._tune_plan(st.stage) AS c) AS k
    WHERE r.run_id = p_run
$$;

-- Where stage p_stage of tune p_tune stands: its best trial (highest NDCG@10; ties: the earlier, i.e.
-- the simpler), the incumbent — the trial kept by the stages before, at first the baseline; for the
-- seen stage, measured with seen features allowed, its own trial of the seen handling in force —,
-- the paired gain and its standard error, and whether to confirm on a second fold: the best gains
-- but not by more than tune_min_gain standard errors (inconclusive; not for the seen stage), and
-- that bar (the tenant's tune_min_gain; p_scope is the tune's evaluation scope).
DROP FUNCTION IF EXISTS reco._tune_pending(text, text);
CREATE OR REPLACE FUNCTION reco._tune_pending(p_scope int, p_tune text, p_stage text)
RETURNS TABLE (incumbent bigint, best bigint, gain float8, se float8, confirm boolean, min_gain float8)
LANGUAGE plpgsql AS $$
DECLARE
    _min float8 := reco.setting('tune_min_gain', (SELECT evaluation_of FROM reco.tenants WHERE tenant_id = p_scope));
    _best bigint;
    _incumbent bigint;
BEGIN
    SELECT t.run_id INTO _best
    FROM reco.tune_trials_of(p_tune) t WHERE t.stage = p_stage
    ORDER BY round(t.ndcg::numeric, 6) DESC, t.run_id
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT t.run_id INTO _incumbent
    FROM reco.tune_trials_of(p_tune) t
    WHERE t.stage = 'baseline' OR coalesce((t.options ->> 'kept')::boolean, false)
    ORDER BY t.run_id DESC
    LIMIT 1;
    IF p_stage = 'seen' THEN
        SELECT t.run_id INTO _incumbent
        FROM reco.tune_trials_of(p_tune) t
        WHERE t.stage = 'seen' AND t.options -> 'trial' -> 'seen_factor'
              = (SELECT r.settings -> 'seen_factor' FROM reco.evaluation_runs r WHERE r.run_id = _incumbent)
        LIMIT 1;
    END IF;
    RETURN QUERY
    SELECT _incumbent, _best, g.gain, g.se,
           p_stage <> 'seen' AND _best <> _incumbent AND g.gain > 0 AND NOT coalesce(g.gain > _min * g.se, false),
           _min
    FROM reco._tune_gain(_incumbent, _best) AS g;
END $$;

-- Close a stage of tune p_tune: its best trial replaces the incumbent (reco._tune_pending) only when
-- it beats it by more than tune_min_gain standard errors of the paired per-user difference — on the
-- first fold, or pooled with a second fold when p_confirm gives the incumbent's and the best's runs
-- there (the caller ran them because the first fold was inconclusive: a gain of about one standard
-- error is a coin toss on a few hundred users). A coordinate search that moved on every noisy maximum
-- would drift (MovieLens-100K: moving on every stage's maximum picked weights and MMR that lost 0.003
-- NDCG@10 on the test split). The kept trial is marked (options.kept, and options.confirmed when the
-- second fold decided) and its settings of this stage made the scope's again (rebuilding what they
-- change) unless they need numpy, which the Python caller does. Returns them.
DROP FUNCTION IF EXISTS reco._tune_keep_best(int, text, text);
CREATE OR REPLACE FUNCTION reco._tune_keep_best(p_scope int, p_tune text, p_stage text,
                                                p_confirm bigint[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _p record;
    _gain float8;
    _se float8;
    _keep bigint;
    _settings jsonb;
BEGIN
    SELECT * INTO _p FROM reco._tune_pending(p_scope, p_tune, p_stage);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    _gain := _p.gain;
    _se := _p.se;
    IF p_confirm IS NOT NULL THEN
        SELECT g.gain, g.se INTO _gain, _se
        FROM reco._tune_gain(ARRAY[_p.incumbent, p_confirm[1]], ARRAY[_p.best, p_confirm[2]]) AS g;
        UPDATE reco.evaluation_runs
        SET options = options || jsonb_build_object('fold_gain', _gain, 'fold_se', _se)
        WHERE run_id = _p.best;
    END IF;
    _keep := CASE WHEN coalesce(_gain > _p.min_gain * _se, false) THEN _p.best ELSE _p.incumbent END;
    IF p_stage <> 'seen' THEN
        UPDATE reco.evaluation_runs
        SET options = options || jsonb_build_object('kept', true)
                              || CASE WHEN p_confirm IS NOT NULL AND _keep = _p.best
                                      THEN jsonb_build_object('confirmed', true) ELSE '{}' END
        WHERE run_id = _keep;
    END IF;
    -- the kept trial's values of the settings this stage varies
    SELECT jsonb_object_agg(k.key, r.settings -> k.key) INTO _settings
    FROM reco.evaluation_runs r
    CROSS JOIN (SELECT DISTINCT jsonb_object_keys(c) AS key FROM reco._tune_plan(p_stage) AS c) AS k
    WHERE r.run_id = _keep;
    IF NOT reco._tune_needs_python(_settings) THEN
        PERFORM reco._tune_restore(p_scope, _settings);
    END IF;
    RETURN _settings;
END $$;


-- The decision: the best trial overall against the baseline (the tenant's settings as they were),
-- paired per user. Applies its settings to the tenant when the NDCG@10 gain exceeds tune_min_gain
-- standard errors (and p_apply). A new τ also rebuilds the tenant's interactions. Returns a summary.
CREATE OR REPLACE FUNCTION reco._tune_decide(p_tenant_id int, p_scope int, p_tune text, p_baseline bigint,
                                             p_apply boolean, p_skipped text[])
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _slug text := (SELECT slug FROM reco.tenants WHERE tenant_id = p_tenant_id);
    _best record;
    _gain float8;
    _se float8;
    _n int;
    _min float8 := reco.setting('tune_min_gain', p_tenant_id)::float8;
    _settings jsonb := '{}';
    _key text;
    _apply boolean;
    _old_tau jsonb := reco.setting('decay_tau_days', p_tenant_id);
    _seen record;
    _blocked text;
BEGIN
    -- the trial the stages kept last (measured like the baseline: the 'seen' stage ranks
    -- differently and is judged on its own below)
    SELECT t.run_id, t.ndcg INTO _best
    FROM reco.tune_trials_of(p_tune) t
    WHERE t.stage <> 'seen' AND (t.stage = 'baseline' OR coalesce((t.options ->> 'kept')::boolean, false))
    ORDER BY t.run_id DESC
    LIMIT 1;
    SELECT g.gain, g.se, g.users INTO _gain, _se, _n FROM reco._tune_gain(p_baseline, _best.run_id) AS g;
    -- the settings of the best trial: the scope's final settings that differ from the tenant's
    -- (every stage keeps its best, so the last trial's scope state is the best overall but for
    -- the seen stage, whose own winner is judged separately below)
    SELECT coalesce(jsonb_object_agg(k, v), '{}') INTO _settings
    FROM (SELECT d.key AS k, (r.settings -> d.key) AS v
          FROM reco.evaluation_runs r CROSS JOIN reco.setting_definitions d
          WHERE r.run_id = _best.run_id AND (r.settings -> d.key) IS DISTINCT FROM reco.setting(d.key, p_tenant_id)
            AND d.key <> 'evaluation_users') AS t;
    _settings := _settings - 'seen_factor';
    IF NOT (_best.run_id <> p_baseline AND coalesce(_gain > _min * _se, false)) THEN
        _settings := '{}';  -- not better than the noise: the tenant keeps its settings
    END IF;
    -- the seen handling, measured with seen features allowed: the seen stage already kept its best
    -- in the scope only if it beat the tenant's seen_factor by the same rule (reco._tune_keep_best)
    SELECT g.gain, g.se INTO _seen
    FROM reco._tune_gain(
        (SELECT t.run_id FROM reco.tune_trials_of(p_tune) t WHERE t.stage = 'seen'
           AND t.options -> 'trial' -> 'seen_factor' = reco.setting('seen_factor', p_tenant_id) LIMIT 1),
        (SELECT t.run_id FROM reco.tune_trials_of(p_tune) t WHERE t.stage = 'seen'
           AND t.options -> 'trial' -> 'seen_factor' = reco.setting('seen_factor', p_scope) LIMIT 1)) AS g;
    IF reco.setting('seen_factor', p_scope) IS DISTINCT FROM reco.setting('seen_factor', p_tenant_id) THEN
        _settings := _settings || jsonb_build_object('seen_factor', reco.setting('seen_factor', p_scope));
    END IF;
    _apply := p_apply AND _settings <> '{}';
    -- a running experiment whose arms read a changed key keeps its settings (sql/012_settings_guard.sql)
    _blocked := CASE WHEN _apply AND coalesce(current_setting('reco.settings_force', true), '') = ''
                     THEN reco.settings_change_blocked(p_tenant_id, ARRAY(SELECT jsonb_object_keys(_settings))) END;
    _apply := _apply AND _blocked IS NULL;
    IF _apply THEN
        PERFORM set_config('reco.settings_source', 'tune ' || p_tune, true);
        FOR _key IN SELECT jsonb_object_keys(_settings) LOOP
            PERFORM reco.set_setting(_key, _settings -> _key, _slug);
        END LOOP;
        PERFORM set_config('reco.settings_source', '', true);
        IF _settings ? 'decay_tau_days' AND _settings -> 'decay_tau_days' IS DISTINCT FROM _old_tau THEN
            PERFORM reco.rebuild_interactions(_slug);
        END IF;
    END IF;
    UPDATE reco.evaluation_runs
    SET options = options || jsonb_build_object('chosen', true, 'applied', _apply, 'gain', _gain, 'se', _se,
                                                'users', _n, 'settings', _settings, 'not_applied', _blocked)
    WHERE run_id = _best.run_id;
    RETURN jsonb_build_object(
        'tune', p_tune, 'seen_gain', _seen.gain, 'seen_se', _seen.se, 'baseline_ndcg', (SELECT ndcg FROM reco.evaluation_results WHERE run_id = p_baseline AND model = 'hybrid'),
        'best_ndcg', _best.ndcg, 'best_run', _best.run_id, 'gain', _gain, 'se', _se, 'users', _n,
        'min_gain_se', _min, 'applied', _apply, 'settings', _settings, 'not_applied', _blocked,
        'trials', (SELECT count(*) FROM reco.evaluation_runs WHERE kind = 'tune' AND options ->> 'tune' = p_tune),
        'confirmations', (SELECT count(*) FROM reco.evaluation_runs WHERE kind = 'tune' AND options ->> 'tune' = p_tune || '/fold1'),
        'skipped', to_jsonb(p_skipped));
END $$;

CREATE OR REPLACE FUNCTION reco.tune(p_tenant text DEFAULT NULL, p_users int DEFAULT NULL,
                                     p_apply boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _tune text := format('%s-%s', _tid, to_char(clock_timestamp(), 'YYYYMMDDHH24MISSUS'));
    _scope int;
    _fold int;
    _baseline bigint;
    _stage text;
    _trial jsonb;
    _pending record;
    _confirm bigint[];
    _skipped text[] := '{}';
    _result jsonb;
BEGIN
    IF (SELECT evaluation_of FROM reco.tenants WHERE tenant_id = _tid) IS NOT NULL THEN
        RAISE EXCEPTION 'tenant "%" is an evaluation scope', p_tenant
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Tune the tenant it was made from.';
    END IF;
    IF reco._tune_needs_python(jsonb_build_object('neighbor_model', reco.setting('neighbor_model', _tid))) THEN
        -- the baseline would be measured without the weights the tenant serves (numpy)
        RAISE EXCEPTION 'tenant "%" serves neighbor_model ease, which SQL cannot compute', p_tenant
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Run `reco tune` (Python, EASE included); the tune job queues it for `reco jobs loop`.';
    END IF;
    PERFORM reco._tune_begin();
    _scope := reco._evaluation_scope(_tid, p_users, 'pgreco-tune');
    IF NOT EXISTS (SELECT 1 FROM reco.evaluation_holdouts WHERE tenant_id = _scope) THEN
        PERFORM reco.drop_tenant((SELECT slug FROM reco.tenants WHERE tenant_id = _scope));
        RETURN jsonb_build_object('tune', _tune, 'applied', false, 'trials', 0,
                                  'message', 'no eligible users: nothing to tune on');
    END IF;
    _baseline := reco._tune_trial(_scope, _tune, 'baseline', '{}');
    FOREACH _stage IN ARRAY reco._tune_stages() LOOP
        FOR _trial IN SELECT reco._tune_plan(_stage) LOOP
            IF reco._tune_needs_python(_trial) THEN
                _skipped := _skipped || format('%s %s', _stage, _trial);
                CONTINUE;
            END IF;
            PERFORM reco._tune_trial(_scope, _tune, _stage, _trial);
        END LOOP;
        -- inconclusive: the incumbent and the best measured again on the second fold (made once)
        _confirm := NULL;
        SELECT * INTO _pending FROM reco._tune_pending(_scope, _tune, _stage);
        IF _pending.confirm THEN
            _fold := coalesce(_fold, reco._evaluation_scope(_tid, p_users, 'pgreco-tune', '{}', true, 1));
            _confirm := ARRAY[
                reco._tune_trial(_fold, _tune || '/fold1', 'confirm', reco._tune_full_settings(_pending.incumbent)),
                reco._tune_trial(_fold, _tune || '/fold1', 'confirm', reco._tune_full_settings(_pending.best))];
        END IF;
        PERFORM reco._tune_keep_best(_scope, _tune, _stage, _confirm);
    END LOOP;
    _result := reco._tune_decide(_tid, _scope, _tune, _baseline, p_apply, _skipped);
    PERFORM reco.drop_tenant((SELECT slug FROM reco.tenants WHERE tenant_id = _scope));
    IF _fold IS NOT NULL THEN
        PERFORM reco.drop_tenant((SELECT slug FROM reco.tenants WHERE tenant_id = _fold));
    END IF;
    RETURN _result;
END $$;
COMMENT ON FUNCTION reco.tune(text, int, boolean) IS
$c$search the tenant's settings on a time-based holdout of its own data (an evaluation scope: each user's most
recently adopted feature held out): the neighbour model and K, the decay τ, the component weights, the seen
handling and MMR λ, one group at a time, each trial recorded in reco.evaluation_runs (kind 'tune'; view
reco.tune_trials). The best is applied when its NDCG@10 gain over the current settings exceeds tune_min_gain
standard errors of the per-user paired difference (p_apply false: never); a stage whose best gains by less is
measured again on a second fold (each user's adoption before the latest) and decided on the gain pooled over both.
EASE trials need numpy and are skipped
here (listed under "skipped"); `reco tune` runs them. A tenant that serves EASE is refused (feature_not_supported):
its baseline needs numpy too. Returns a summary. Run the jobs afterwards.
Example: SELECT reco.tune();$c$;

-- What a tune did to the tenant's settings, in the job's message.
CREATE OR REPLACE FUNCTION reco._tune_verdict(p_summary jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN (p_summary ->> 'applied')::boolean THEN 'applied ' || (p_summary ->> 'settings')
                WHEN p_summary ->> 'not_applied' IS NOT NULL
                    THEN format('not applied: %s (would apply %s)', p_summary ->> 'not_applied', p_summary ->> 'settings')
                ELSE 'kept the settings' END
$$;

CREATE OR REPLACE FUNCTION reco.job_tune(p_tenant_id int)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _r jsonb;
BEGIN
    IF reco._python_step('tune') THEN
        -- the Python runner did the search just before, in this session, EASE included (app/tune.py)
        PERFORM set_config('reco.job_message', coalesce(current_setting('reco.tune_message', true), ''), true);
        RETURN 0;
    END IF;
    IF reco._tune_needs_python(jsonb_build_object('neighbor_model', reco.setting('neighbor_model', p_tenant_id))) THEN
        PERFORM reco._defer(p_tenant_id, 'tune',
            'the tenant serves neighbor_model ease: its search needs Python (numpy), queued for `reco jobs loop`');
        RETURN 0;
    END IF;
    _r := reco.tune((SELECT slug FROM reco.tenants WHERE tenant_id = p_tenant_id));
    IF jsonb_array_length(coalesce(_r -> 'skipped', '[]')) > 0 THEN
        PERFORM reco._defer(p_tenant_id, 'tune', format(
            'tuned without the EASE trials (numpy): %s; the full search is queued for `reco jobs loop`',
            reco._tune_verdict(_r)));
    ELSE
        PERFORM set_config('reco.job_message', reco._tune_verdict(_r), true);
    END IF;
    RETURN (_r ->> 'trials')::bigint;
END $$;
COMMENT ON FUNCTION reco.job_tune(int) IS
    'job body: reco.tune for a tenant (weekly; not part of run_job(''all'')); returns the trials run';

DROP VIEW IF EXISTS reco.tune_trials;  -- its columns change with the tuner (CREATE OR REPLACE cannot rename)
CREATE VIEW reco.tune_trials AS
SELECT r.run_id, r.tenant, r.options ->> 'tune' AS tune, r.options ->> 'stage' AS stage, r.options -> 'trial' AS trial,
       x.users, round(x.ndcg::numeric, 4) AS ndcg, round(x.hit_rate::numeric, 4) AS hit_rate,
       coalesce((r.options ->> 'kept')::boolean, false) AS kept,
       coalesce((r.options ->> 'chosen')::boolean, false) AS chosen,
       (r.options ->> 'applied')::boolean AS applied, round((r.options ->> 'gain')::numeric, 4) AS gain,
       round((r.options ->> 'se')::numeric, 4) AS se, r.finished_at - r.started_at AS took
FROM reco.evaluation_runs r
JOIN reco.evaluation_results x ON x.run_id = r.run_id AND x.model = 'hybrid'
WHERE r.kind = 'tune';
COMMENT ON VIEW reco.tune_trials IS
    'every trial of the tune job: what was tried (stage, trial settings), NDCG@10 and Hit@10 on the holdout, which trial each stage kept (kept: it beat the one kept before by more than tune_min_gain standard errors), the final one (chosen) and whether it was applied (gain and its standard error against the settings in force): SELECT * FROM reco.tune_trials ORDER BY run_id DESC;';
