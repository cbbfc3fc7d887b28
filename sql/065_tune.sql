-- Self-tuning per tenant: the tune job searches the neighbour model, K, the decay τ, the component
-- weights, the seen handling and MMR λ on a time-based holdout of the tenant's own data (an
-- evaluation scope, sql/060_evaluation.sql), records every trial as an evaluation run of kind
-- 'tune', and applies the best when it beats the tenant's current settings by more than the noise.
-- A stage whose best gains by less than that is measured again on a second fold (the adoption
-- before the latest held out) and decided on the pooled gain (reco._tune_pending, _tune_keep_best).
--
--   reco.tune(tenant, users, apply)   the whole search in SQL (CALL reco.run_job('tune'), pg_cron):
--                                     every model but EASE, which needs numpy
--   `reco tune` (jobs/tune.py)        the same stages from Python, EASE trials included
--
-- Sync contract: the stages are reco._tune_stages(); their candidates reco._tune_plan(); a trial
-- is reco._tune_trial(); jobs/tune.py walks the same stages with the same functions (through their
-- public wrappers at the end of this file: reco.tune_stages, tune_plan, tune_trial, ...). What a tune
-- decided — per stage, the component floor and the final configuration: kept, chosen, applied,
-- and the fold each gain comes from — is in reco.tune_decisions only (written by _tune_keep_best
-- and _tune_decide); reco.tune_trials, reco.tune_summaries, the console and `reco tune` read it.
-- The tenant's settings are written in one place: reco._tune_apply.

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
    CREATE TEMP TABLE _tune_scores (run_id bigint, model text NOT NULL DEFAULT 'hybrid', user_key int, ndcg float8,
                                    PRIMARY KEY (run_id, model, user_key));
END $$;

-- The components the floor measures alone (reco._evaluation_models' single-component models) and
-- the weights that make the hybrid rank exactly as one of them does (the others 0).
CREATE OR REPLACE FUNCTION reco._tune_components()
RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT reco._component_names(true)
$$;

CREATE OR REPLACE FUNCTION reco._tune_component_weights(p_component text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_object_agg('weight_' || c, (c = p_component)::int) FROM unnest(reco._tune_components()) AS c
$$;

-- The trial the stages of tune p_tune kept last (the incumbent of the next stage): the latest
-- stage decision but the seen stage's (measured with seen features allowed), at first the baseline.
CREATE OR REPLACE FUNCTION reco._tune_incumbent(p_tune text)
RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT d.kept FROM reco.tune_decisions d
         WHERE d.tune = p_tune AND d.stage = ANY (reco._tune_stages()) AND d.stage <> 'seen'
         ORDER BY d.position DESC LIMIT 1),
        (SELECT t.run_id FROM reco.tune_trials_of(p_tune) t WHERE t.stage = 'baseline' ORDER BY t.run_id LIMIT 1))
$$;

-- A trial's full settings for its stage: the values of every setting the stage varies, as in the
-- trial kept so far (at first the baseline), overridden by the trial's own. So a trial changes only
-- what it names: an EASE trial after an RP3beta one does not carry RP3beta's α and β along.
CREATE OR REPLACE FUNCTION reco._tune_settings(p_tune text, p_stage text, p_settings jsonb)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT jsonb_object_agg(k.key, r.settings -> k.key)
                     FROM reco.evaluation_runs r
                     CROSS JOIN (SELECT DISTINCT jsonb_object_keys(c) AS key FROM reco._tune_plan(p_stage) AS c) AS k
                     WHERE r.run_id = reco._tune_incumbent(p_tune)), '{}') || p_settings
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
-- store the run (kind 'tune') and the per-user NDCG; returns the run id. The baseline and the
-- floor trial also rank each component alone (reco._tune_components), kept in the run's results.
CREATE OR REPLACE FUNCTION reco._tune_trial(p_scope int, p_tune text, p_stage text, p_settings jsonb)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _slug text := (SELECT slug FROM reco.tenants WHERE tenant_id = p_scope AND evaluation_of IS NOT NULL);
    _started timestamptz := clock_timestamp();
    _models text[] := CASE WHEN p_stage IN ('baseline', 'floor') THEN 'hybrid'::text || reco._tune_components()
                           ELSE '{hybrid}' END;
    _model text;
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
    FOREACH _model IN ARRAY _models LOOP
        PERFORM reco._evaluation_rank(p_scope, _model, 10, NULL, NULL,
                                      CASE WHEN p_stage = 'seen' THEN '{"exclude_seen": false}'::jsonb ELSE '{}' END);
    END LOOP;
    _run := reco._evaluation_record(p_scope, 'tune', 10,
                                    jsonb_build_object('tune', p_tune, 'stage', p_stage, 'trial', p_settings),
                                    _started);
    DELETE FROM reco.evaluation_results WHERE run_id = _run AND model <> ALL (_models);
    INSERT INTO _tune_scores (run_id, model, user_key, ndcg)
    SELECT _run, r.model, r.user_key, coalesce(1.0 / log(2.0, r.hit_rank + 1.0), 0)
    FROM reco.evaluation_ranks r WHERE r.tenant_id = p_scope AND r.model = ANY (_models);
    RETURN _run;
END $$;
COMMENT ON FUNCTION reco._tune_trial(int, text, text, jsonb) IS
    'internal: one trial of the tune job in an evaluation scope; returns its evaluation run id (kind tune)';

-- The paired per-user difference of NDCG@10 between trials of this session's tune (p_to minus
-- p_from), pooled over folds: p_from[i] and p_to[i] were ranked in the same evaluation scope (one
-- scope per fold; the folds hold the same users under the same keys), each user's difference is
-- averaged over the folds that hold the user. Its mean, its standard error and the users compared.
-- p_to_model: the model of p_to's runs compared (the hybrid; a component alone, for the floor).
DROP FUNCTION IF EXISTS reco._tune_gain(bigint[], bigint[]);
DROP FUNCTION IF EXISTS reco._tune_gain(bigint, bigint);
CREATE OR REPLACE FUNCTION reco._tune_gain(p_from bigint[], p_to bigint[], p_to_model text DEFAULT 'hybrid')
RETURNS TABLE (gain float8, se float8, users int)
-- plpgsql: the session's table of scores exists only while a tune runs (reco._tune_begin)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT avg(d.diff), stddev_samp(d.diff) / sqrt(count(*)), count(*)::int
    FROM (SELECT a.user_key, avg(b.ndcg - a.ndcg) AS diff
          FROM unnest(p_from, p_to) AS f(run_from, run_to)
          JOIN _tune_scores a ON a.run_id = f.run_from AND a.model = 'hybrid'
          JOIN _tune_scores b ON b.run_id = f.run_to AND b.model = p_to_model AND b.user_key = a.user_key
          GROUP BY a.user_key) AS d;
END $$;

CREATE OR REPLACE FUNCTION reco._tune_gain(p_from bigint, p_to bigint, p_to_model text DEFAULT 'hybrid')
RETURNS TABLE (gain float8, se float8, users int)
LANGUAGE sql STABLE AS $$
    SELECT * FROM reco._tune_gain(ARRAY[p_from], ARRAY[p_to], p_to_model)
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
    _incumbent bigint := reco._tune_incumbent(p_tune);
BEGIN
    SELECT t.run_id INTO _best
    FROM reco.tune_trials_of(p_tune) t WHERE t.stage = p_stage
    ORDER BY round(t.ndcg::numeric, 6) DESC, t.run_id
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
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
-- NDCG@10 on the test split). The stage's decision is a row of reco.tune_decisions (incumbent, best,
-- kept, the gain and standard error it was taken on and the fold(s) they come from, the settings it
-- chose); the kept trial's settings of this stage are made the scope's again (rebuilding what they
-- change) unless they need numpy, which the Python caller does. Returns them.
DROP FUNCTION IF EXISTS reco._tune_keep_best(int, text, text);
CREATE OR REPLACE FUNCTION reco._tune_keep_best(p_scope int, p_tune text, p_stage text,
                                                p_confirm bigint[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _p record;
    _g record;
    _keep bigint;
    _settings jsonb;
    _note text;
BEGIN
    SELECT * INTO _p FROM reco._tune_pending(p_scope, p_tune, p_stage);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    _note := format('holdout %s ± %s', to_char(_p.gain, 'SG0.0000'), to_char(_p.se, 'FM0.0000'));
    IF p_confirm IS NOT NULL THEN
        SELECT g.gain, g.se, g.users INTO _g
        FROM reco._tune_gain(ARRAY[_p.incumbent, p_confirm[1]], ARRAY[_p.best, p_confirm[2]]) AS g;
        _note := _note || format(' (inconclusive), pooled with the second fold %s ± %s',
                                 to_char(_g.gain, 'SG0.0000'), to_char(_g.se, 'FM0.0000'));
    ELSE
        SELECT g.gain, g.se, g.users INTO _g FROM reco._tune_gain(_p.incumbent, _p.best) AS g;
    END IF;
    _keep := CASE WHEN coalesce(_g.gain > _p.min_gain * _g.se, false) THEN _p.best ELSE _p.incumbent END;
    -- the kept trial's values of the settings this stage varies
    SELECT jsonb_object_agg(k.key, r.settings -> k.key) INTO _settings
    FROM reco.evaluation_runs r
    CROSS JOIN (SELECT DISTINCT jsonb_object_keys(c) AS key FROM reco._tune_plan(p_stage) AS c) AS k
    WHERE r.run_id = _keep;
    INSERT INTO reco.tune_decisions (tenant, tune, stage, position, incumbent, best, kept, gain, se, users, fold,
                                     settings, note)
    SELECT r.tenant, p_tune, p_stage, array_position(reco._tune_stages(), p_stage), _p.incumbent, _p.best, _keep,
           _g.gain, _g.se, _g.users, CASE WHEN p_confirm IS NULL THEN 'holdout' ELSE 'holdout+second fold' END,
           _settings, _note || CASE WHEN _keep = _p.best AND _p.best <> _p.incumbent
                                    THEN format(': the best beat the incumbent by more than %s se', _p.min_gain)
                                    ELSE ': the incumbent kept' END
    FROM reco.evaluation_runs r WHERE r.run_id = _keep;
    IF NOT reco._tune_needs_python(_settings) OR reco._ease_in_sql(p_scope) THEN
        PERFORM reco._tune_restore(p_scope, _settings);
    END IF;
    RETURN _settings;
END $$;


COMMENT ON TABLE reco.tune_decisions IS
$c$what each tune decided, one row per stage (model, tau, weights, seen, mmr) and a 'final' row: the incumbent trial,
the stage's best, the trial kept, the paired NDCG@10 gain and standard error the decision was taken on and the fold(s)
they come from (holdout, or holdout+second fold when the holdout was inconclusive), the settings the stage chose,
whether they were applied to the tenant; the final row: the tenant's settings (incumbent), the tuned trial (best), the
run measured for what is served (kept), what is served (the hybrid, or a component alone: the floor), the settings
applied. The one source of kept / chosen / applied: SELECT * FROM reco.tune_decisions ORDER BY decided_at DESC;$c$;

DROP VIEW IF EXISTS reco.tune_trials;  -- its columns change with the tuner (CREATE OR REPLACE cannot rename)
CREATE VIEW reco.tune_trials AS
SELECT r.run_id, r.tenant, r.options ->> 'tune' AS tune,
       CASE WHEN r.options ->> 'tune' LIKE '%/fold1' THEN 'second fold' ELSE 'holdout' END AS fold,
       r.options ->> 'stage' AS stage, r.options -> 'trial' AS trial,
       x.users, round(x.ndcg::numeric, 4) AS ndcg, round(x.hit_rate::numeric, 4) AS hit_rate,
       coalesce(d.kept, (r.options ->> 'kept')::boolean, false) AS kept,
       CASE WHEN d.legacy THEN coalesce((r.options ->> 'chosen')::boolean, false) ELSE f.run_id IS NOT NULL END AS chosen,
       CASE WHEN d.legacy THEN (r.options ->> 'applied')::boolean ELSE f.applied END AS applied,
       f.served,
       round(coalesce(f.gain, (r.options ->> 'gain')::float8)::numeric, 4) AS gain,
       round(coalesce(f.se, (r.options ->> 'se')::float8)::numeric, 4) AS se,
       r.finished_at - r.started_at AS took
FROM reco.evaluation_runs r
JOIN reco.evaluation_results x ON x.run_id = r.run_id AND x.model = 'hybrid'
-- a tune run before reco.tune_decisions existed (legacy) kept its flags in options
CROSS JOIN LATERAL (
    SELECT NOT EXISTS (SELECT 1 FROM reco.tune_decisions t
                       WHERE t.tenant = r.tenant AND t.tune = split_part(r.options ->> 'tune', '/', 1)) AS legacy,
           CASE WHEN EXISTS (SELECT 1 FROM reco.tune_decisions t
                             WHERE t.tenant = r.tenant AND t.tune = split_part(r.options ->> 'tune', '/', 1))
                THEN EXISTS (SELECT 1 FROM reco.tune_decisions t WHERE t.kept = r.run_id AND t.stage <> 'final') END AS kept
) AS d
LEFT JOIN LATERAL (SELECT r.run_id, t.applied, t.served, t.gain, t.se FROM reco.tune_decisions t
                   WHERE t.kept = r.run_id AND t.stage = 'final') AS f ON true
WHERE r.kind = 'tune';
COMMENT ON VIEW reco.tune_trials IS
    'every trial of the tune job: what was tried (stage, trial settings), on which fold (holdout, or the second fold that confirms an inconclusive stage), NDCG@10 and Hit@10, which trial each stage kept, the one measured for what is served (chosen; served: the hybrid or a component alone) and whether it was applied, with the gain and standard error against the tenant''s settings on the holdout — all read from reco.tune_decisions: SELECT * FROM reco.tune_trials ORDER BY run_id DESC;';

CREATE OR REPLACE VIEW reco.tune_summaries AS
SELECT d.tenant, d.tune,
       (SELECT min(r.started_at) FROM reco.evaluation_runs r
        WHERE r.kind = 'tune' AND r.tenant = d.tenant AND split_part(r.options ->> 'tune', '/', 1) = d.tune) AS started_at,
       d.decided_at AS finished_at,
       (SELECT count(*) FROM reco.evaluation_runs r
        WHERE r.kind = 'tune' AND r.tenant = d.tenant AND r.options ->> 'tune' = d.tune)::int AS trials,
       (SELECT count(*) FROM reco.evaluation_runs r
        WHERE r.kind = 'tune' AND r.tenant = d.tenant AND r.options ->> 'tune' = d.tune || '/fold1')::int AS confirmations,
       (SELECT x.ndcg FROM reco.evaluation_results x WHERE x.run_id = d.incumbent AND x.model = 'hybrid') AS baseline_ndcg,
       (SELECT x.ndcg FROM reco.evaluation_results x WHERE x.run_id = d.best AND x.model = 'hybrid') AS tuned_ndcg,
       d.served,
       (SELECT x.ndcg FROM reco.evaluation_results x WHERE x.run_id = d.kept AND x.model = d.served) AS served_ndcg,
       d.kept AS served_run, d.gain, d.se, d.users, d.fold, d.settings, d.applied, d.note
FROM reco.tune_decisions d
WHERE d.stage = 'final';
COMMENT ON VIEW reco.tune_summaries IS
    'one row per tune (its final decision): NDCG@10 on the holdout of the tenant''s settings (baseline), of the tuned configuration and of what is served (the hybrid, or a component alone when it beat the hybrid), the gain of what is served over the baseline with its standard error and fold, the settings applied (or that would be, applied false), and why: SELECT * FROM reco.tune_summaries ORDER BY finished_at DESC;';

-- Write a tune's chosen settings to the tenant: the one place the tune changes a tenant's settings
-- (a guard on running experiments belongs here). A new τ also rebuilds the tenant's interactions.
CREATE OR REPLACE FUNCTION reco._tune_apply(p_tenant_id int, p_settings jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    _slug text := (SELECT slug FROM reco.tenants WHERE tenant_id = p_tenant_id);
    _old_tau jsonb := reco.setting('decay_tau_days', p_tenant_id);
    _key text;
BEGIN
    PERFORM set_config('reco.settings_source', 'tune', true);  -- reco.settings_history says who
    FOR _key IN SELECT jsonb_object_keys(p_settings) LOOP
        PERFORM reco.set_setting(_key, p_settings -> _key, _slug);
    END LOOP;
    PERFORM set_config('reco.settings_source', '', true);
    IF p_settings ? 'decay_tau_days' AND p_settings -> 'decay_tau_days' IS DISTINCT FROM _old_tau THEN
        PERFORM reco.rebuild_interactions(_slug);
    END IF;
END $$;
COMMENT ON FUNCTION reco._tune_apply(int, jsonb) IS
    'internal: write the settings a tune chose to the tenant (the only place the tune does); a new τ rebuilds the interactions';

-- The decision, after the stages and the floor trial (the tuned configuration measured again with
-- each component alone): 1. the tuned configuration (the trial the stages kept) replaces the
-- tenant's settings when its NDCG@10 gain on the holdout exceeds tune_min_gain standard errors of
-- the paired per-user difference, else the tenant's settings stay; 2. the component floor: when a
-- component alone scores above the hybrid of that configuration on the holdout, its weights (that
-- component 1, the others 0: the hybrid then ranks exactly as it does) are served instead; 3. the
-- seen handling, judged by its own stage, is added. The settings that differ from the tenant's are
-- applied (p_apply) by reco._tune_apply. The decision is the 'final' row of reco.tune_decisions,
-- each stage's row says whether its choice was applied. Returns the summary (reco._tune_summary).
CREATE OR REPLACE FUNCTION reco._tune_decide(p_tenant_id int, p_scope int, p_tune text, p_baseline bigint,
                                             p_apply boolean, p_skipped text[])
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _slug text := (SELECT slug FROM reco.tenants WHERE tenant_id = p_tenant_id);
    _min float8 := reco.setting('tune_min_gain', p_tenant_id)::float8;
    _tuned bigint := reco._tune_incumbent(p_tune);
    _floor bigint := (SELECT t.run_id FROM reco.tune_trials_of(p_tune) t WHERE t.stage = 'floor'
                      ORDER BY t.run_id DESC LIMIT 1);
    _g record;
    _final record;
    _proposed bigint;
    _measured bigint;
    _hybrid float8;
    _comp record;
    _served text := 'hybrid';
    _config jsonb;
    _settings jsonb;
    _seen jsonb;
    _note text;
    _apply boolean;
    _blocked text;
BEGIN
    SELECT * INTO _g FROM reco._tune_gain(p_baseline, _tuned) AS g;
    IF _tuned <> p_baseline AND coalesce(_g.gain > _min * _g.se, false) THEN
        _proposed := _tuned;
        _measured := coalesce(_floor, _tuned);
        _note := format('the tuned configuration beat the tenant''s settings by %s ± %s on the holdout (more than %s se)',
                        to_char(_g.gain, 'SG0.0000'), to_char(_g.se, 'FM0.0000'), _min);
    ELSE
        _proposed := p_baseline;
        _measured := p_baseline;
        _note := CASE WHEN _tuned = p_baseline THEN 'no stage beat the tenant''s settings: they stay'
                      ELSE format('the tuned configuration gained %s ± %s on the holdout, not more than %s se: the tenant''s settings stay',
                                  to_char(_g.gain, 'SG0.0000'), to_char(_g.se, 'FM0.0000'), _min) END;
    END IF;
    -- the component floor, on the runs that ranked the components with that configuration
    _hybrid := (SELECT x.ndcg FROM reco.evaluation_results x WHERE x.run_id = _measured AND x.model = 'hybrid');
    SELECT x.model, x.ndcg INTO _comp
    FROM reco.evaluation_results x
    WHERE x.run_id = _measured AND x.model = ANY (reco._tune_components())
    ORDER BY round(x.ndcg::numeric, 6) DESC, array_position(reco._tune_components(), x.model)
    LIMIT 1;
    _config := (SELECT r.settings FROM reco.evaluation_runs r WHERE r.run_id = _proposed);
    IF _comp.model IS NOT NULL AND round(_comp.ndcg::numeric, 6) > round(_hybrid::numeric, 6) THEN
        _served := _comp.model;
        _config := _config || reco._tune_component_weights(_comp.model);
        SELECT * INTO _final FROM reco._tune_gain(p_baseline, _measured, _comp.model) AS g;
        _note := _note || format('; floor: %s alone (NDCG@10 %s) beats that hybrid (%s) on the holdout, so its configuration is served (%s)',
                                 _comp.model, round(_comp.ndcg::numeric, 4), round(_hybrid::numeric, 4),
                                 reco._tune_component_weights(_comp.model));
    ELSE
        SELECT * INTO _final FROM reco._tune_gain(p_baseline, _proposed) AS g;
        _note := _note || format('; floor: the hybrid (NDCG@10 %s) is not below its best component, %s alone (%s)',
                                 round(_hybrid::numeric, 4), coalesce(_comp.model, 'none'),
                                 coalesce(round(_comp.ndcg::numeric, 4)::text, '–'));
    END IF;
    -- the settings served that differ from the tenant's (the seen handling: its own stage's choice)
    _seen := (SELECT d.settings FROM reco.tune_decisions d WHERE d.tune = p_tune AND d.stage = 'seen');
    _config := _config - 'seen_factor' || coalesce(_seen, '{}');
    SELECT coalesce(jsonb_object_agg(d.key, _config -> d.key), '{}') INTO _settings
    FROM reco.setting_definitions d
    WHERE d.key <> 'evaluation_users' AND _config ? d.key
      AND (_config -> d.key) IS DISTINCT FROM reco.setting(d.key, p_tenant_id);
    _apply := p_apply AND _settings <> '{}';
    -- a running experiment whose arms read a changed key keeps its settings (sql/012_settings_guard.sql)
    _blocked := CASE WHEN _apply AND coalesce(current_setting('reco.settings_force', true), '') = ''
                     THEN reco.settings_change_blocked(p_tenant_id, ARRAY(SELECT jsonb_object_keys(_settings))) END;
    _apply := _apply AND _blocked IS NULL;
    -- each stage's choice is applied when the settings it changed are among those applied
    UPDATE reco.tune_decisions d
    SET applied = _apply AND EXISTS (SELECT 1 FROM jsonb_each(d.settings) e WHERE _settings -> e.key = e.value)
                  AND NOT EXISTS (SELECT 1 FROM jsonb_each(d.settings) e
                                  WHERE e.value IS DISTINCT FROM reco.setting(e.key, p_tenant_id)
                                    AND (_settings -> e.key) IS DISTINCT FROM e.value)
    WHERE d.tune = p_tune AND d.tenant = _slug;
    INSERT INTO reco.tune_decisions (tenant, tune, stage, position, incumbent, best, kept, gain, se, users, fold,
                                     settings, applied, served, note)
    VALUES (_slug, p_tune, 'final', cardinality(reco._tune_stages()) + 1, p_baseline, _tuned, _measured,
            _final.gain, _final.se, _final.users, 'holdout', _settings, _apply, _served,
            _note || CASE WHEN _apply THEN '; applied' WHEN _settings = '{}' THEN '; nothing to change'
                          WHEN _blocked IS NOT NULL THEN '; not applied: ' || _blocked
                          ELSE '; not applied (apply false)' END);
    IF _apply THEN
        PERFORM reco._tune_apply(p_tenant_id, _settings);
    END IF;
    RETURN reco._tune_summary(_slug, p_tune) || jsonb_build_object('skipped', to_jsonb(p_skipped), 'not_applied', _blocked);
END $$;

-- A tune's summary from reco.tune_decisions (one source for reco.tune's result, the job's log and
-- `reco tune`): the final decision, what each stage chose and whether it was applied, and the
-- fold each number comes from.
CREATE OR REPLACE FUNCTION reco._tune_summary(p_tenant text, p_tune text)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'tune', s.tune, 'baseline_ndcg', s.baseline_ndcg, 'tuned_ndcg', s.tuned_ndcg,
        'served', s.served, 'served_ndcg', s.served_ndcg, 'best_ndcg', s.served_ndcg, 'best_run', s.served_run,
        'gain', s.gain, 'se', s.se, 'users', s.users, 'fold', s.fold,
        'min_gain_se', reco.setting('tune_min_gain', reco._tenant_id(p_tenant)),
        'applied', s.applied, 'settings', s.settings, 'note', s.note,
        'trials', s.trials, 'confirmations', s.confirmations,
        'seen_gain', (SELECT d.gain FROM reco.tune_decisions d WHERE d.tenant = p_tenant AND d.tune = p_tune AND d.stage = 'seen'),
        'seen_se', (SELECT d.se FROM reco.tune_decisions d WHERE d.tenant = p_tenant AND d.tune = p_tune AND d.stage = 'seen'),
        'stages', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                              'stage', d.stage, 'chosen', d.settings, 'applied', d.applied, 'changed', d.kept <> d.incumbent,
                              'gain', d.gain, 'se', d.se, 'fold', d.fold, 'note', d.note) ORDER BY d.position), '[]')
                   FROM reco.tune_decisions d
                   WHERE d.tenant = p_tenant AND d.tune = p_tune AND d.stage <> 'final'))
    FROM reco.tune_summaries s
    WHERE s.tenant = p_tenant AND s.tune = p_tune
$$;
COMMENT ON FUNCTION reco._tune_summary(text, text) IS
    'internal: the summary of one tune as JSON, read from reco.tune_summaries and reco.tune_decisions';

-- One line that says what a tune did (the job's log, `reco tune`, `reco demo`), from its summary.
CREATE OR REPLACE FUNCTION reco._tune_message(p_summary jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_summary ? 'message' THEN p_summary ->> 'message' ELSE
        format('%s trials%s; holdout NDCG@10: the tenant''s settings %s, tuned %s, served %s %s (gain %s ± %s, %s users); %s; %s',
               p_summary ->> 'trials',
               CASE WHEN (p_summary ->> 'confirmations')::int > 0
                    THEN format(' (+%s on a second fold)', p_summary ->> 'confirmations') ELSE '' END,
               to_char((p_summary ->> 'baseline_ndcg')::float8, 'FM0.0000'),
               to_char((p_summary ->> 'tuned_ndcg')::float8, 'FM0.0000'),
               CASE p_summary ->> 'served' WHEN 'hybrid' THEN 'the hybrid' ELSE (p_summary ->> 'served') || ' alone' END,
               to_char((p_summary ->> 'served_ndcg')::float8, 'FM0.0000'),
               to_char((p_summary ->> 'gain')::float8, 'SG0.0000'), to_char((p_summary ->> 'se')::float8, 'FM0.0000'),
               p_summary ->> 'users',
               CASE WHEN (p_summary ->> 'applied')::boolean THEN 'applied ' || (p_summary ->> 'settings')
                    WHEN p_summary -> 'settings' <> '{}' THEN 'would apply ' || (p_summary ->> 'settings')
                    ELSE 'kept the settings' END,
               p_summary ->> 'note')
    END
$$;
COMMENT ON FUNCTION reco._tune_message(jsonb) IS
    'internal: the one-line report of a tune (job log, `reco tune`, `reco demo`) from its summary';

-- A tune started outside reco.run_job (SELECT reco.tune(), `reco tune`, `reco demo`) logs its run in
-- reco.job_runs as the job would: run_job sets reco.job_run while a job body runs, and logs it itself.
CREATE OR REPLACE FUNCTION reco._tune_log(p_tenant_id int, p_started timestamptz, p_summary jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('reco.job_run', true), '') = '' THEN
        INSERT INTO reco.job_runs (job, tenant, status, rows_written, message, started_at, finished_at)
        VALUES ('tune', (SELECT slug FROM reco.tenants WHERE tenant_id = p_tenant_id), 'succeeded',
                coalesce((p_summary ->> 'trials')::bigint, 0), reco._tune_message(p_summary), p_started,
                clock_timestamp());
    END IF;
END $$;
COMMENT ON FUNCTION reco._tune_log(int, timestamptz, jsonb) IS
    'internal: log a tune started outside reco.run_job in reco.job_runs (job tune), with its one-line report';

CREATE OR REPLACE FUNCTION reco.tune(p_tenant text DEFAULT NULL, p_users int DEFAULT NULL,
                                     p_apply boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _started timestamptz := clock_timestamp();
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
    -- the baseline would be measured without what the tenant serves (EASE weights, SVD factors: numpy)
    PERFORM reco._evaluation_require_sql(_tid, '{}', 'tune');
    PERFORM reco._tune_begin();
    _scope := reco._evaluation_scope(_tid, p_users, 'pgreco-tune');
    IF NOT EXISTS (SELECT 1 FROM reco.evaluation_holdouts WHERE tenant_id = _scope) THEN
        PERFORM reco.drop_tenant((SELECT slug FROM reco.tenants WHERE tenant_id = _scope));
        _result := jsonb_build_object('tune', _tune, 'applied', false, 'trials', 0,
                                      'message', 'no eligible users: nothing to tune on');
        PERFORM reco._tune_log(_tid, _started, _result);
        RETURN _result;
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
    -- the tuned configuration again, with each component alone (the component floor)
    PERFORM reco._tune_trial(_scope, _tune, 'floor', '{}');
    _result := reco._tune_decide(_tid, _scope, _tune, _baseline, p_apply, _skipped);
    PERFORM reco.drop_tenant((SELECT slug FROM reco.tenants WHERE tenant_id = _scope));
    IF _fold IS NOT NULL THEN
        PERFORM reco.drop_tenant((SELECT slug FROM reco.tenants WHERE tenant_id = _fold));
    END IF;
    PERFORM reco._tune_log(_tid, _started, _result);
    RETURN _result;
END $$;
COMMENT ON FUNCTION reco.tune(text, int, boolean) IS
$c$search the tenant's settings on a time-based holdout of its own data (an evaluation scope: each user's most
recently adopted feature held out): the neighbour model and K, the decay τ, the component weights, the seen
handling and MMR λ, one group at a time, each trial recorded in reco.evaluation_runs (kind 'tune'; view
reco.tune_trials), each stage's decision in reco.tune_decisions. The tuned configuration is applied when its
NDCG@10 gain over the current settings exceeds tune_min_gain standard errors of the per-user paired difference
(p_apply false: never); a stage whose best gains by less is measured again on a second fold (each user's adoption
before the latest) and decided on the gain pooled over both. Component floor: when a component alone scores above
the hybrid it would serve, that component's weights are served instead. EASE trials need numpy and are skipped
here (listed under "skipped"); `reco tune` runs them. A tenant that serves EASE or has more than 64 active
features is refused (feature_not_supported): its baseline needs numpy. Logged in reco.job_runs (job tune).
Returns a summary (reco.tune_summaries). Run the jobs afterwards.
Example: SELECT reco.tune(NULL, 500, false) ->> 'served';$c$;

CREATE OR REPLACE FUNCTION reco.job_tune(p_tenant_id int)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _r jsonb;
BEGIN
    IF reco._python_step('tune') THEN
        -- the Python runner did the search just before, in this session, EASE included (jobs/tune.py)
        PERFORM set_config('reco.job_message', coalesce(current_setting('reco.tune_message', true), ''), true);
        RETURN 0;
    END IF;
    IF cardinality(reco._evaluation_python_steps(p_tenant_id)) > 0 THEN
        PERFORM reco._defer(p_tenant_id, 'tune', format(
            'the tune needs %s (numpy): its search is queued for `reco jobs loop`',
            array_to_string(reco._evaluation_python_steps(p_tenant_id), ' and ')));
        RETURN 0;
    END IF;
    _r := reco.tune((SELECT slug FROM reco.tenants WHERE tenant_id = p_tenant_id));
    IF jsonb_array_length(coalesce(_r -> 'skipped', '[]')) > 0 THEN
        PERFORM reco._defer(p_tenant_id, 'tune', format(
            'tuned without the EASE trials (numpy): %s; the full search is queued for `reco jobs loop`',
            reco._tune_message(_r)));
    ELSE
        PERFORM set_config('reco.job_message', reco._tune_message(_r), true);
    END IF;
    RETURN (_r ->> 'trials')::bigint;
END $$;
COMMENT ON FUNCTION reco.job_tune(int) IS
    'job body: reco.tune for a tenant (weekly; not part of run_job(''all'')); returns the trials run';


-- ---------------------------------------------------------------------------------------
-- The tune's steps, public: what `reco tune` (jobs/tune.py) walks from Python to add the numpy
-- (EASE) trials between them. Thin wrappers of the helpers above, which reco.tune uses directly; one
-- tune runs in one session (reco.tune_begin creates its session-local scores).
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.tune_begin()
RETURNS void
LANGUAGE sql AS $$
    SELECT reco._tune_begin()
$$;
COMMENT ON FUNCTION reco.tune_begin() IS
    'start a tune in this session: (re)creates the session-local per-user scores its trials are compared on; call it first';

CREATE OR REPLACE FUNCTION reco.tune_stages()
RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT reco._tune_stages()
$$;
COMMENT ON FUNCTION reco.tune_stages() IS
    'the stages of the tune''s coordinate search, in order (model, tau, weights, seen, mmr)';

CREATE OR REPLACE FUNCTION reco.tune_plan(p_stage text)
RETURNS SETOF jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT * FROM reco._tune_plan(p_stage)
$$;
COMMENT ON FUNCTION reco.tune_plan(text) IS
    'the candidate settings a tune tries in stage p_stage (reco.tune_stages()), one JSON object of settings each';

CREATE OR REPLACE FUNCTION reco.tune_needs_python(p_settings jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT reco._tune_needs_python(p_settings)
$$;
COMMENT ON FUNCTION reco.tune_needs_python(jsonb) IS
    'whether a trial''s settings need numpy (EASE neighbour weights): reco.tune skips those trials, `reco tune` computes them';

CREATE OR REPLACE FUNCTION reco.tune_trial_settings(p_tune text, p_stage text, p_settings jsonb)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT reco._tune_settings(p_tune, p_stage, p_settings)
$$;
COMMENT ON FUNCTION reco.tune_trial_settings(text, text, jsonb) IS
    'a trial''s full settings for its stage: every setting the stage varies as in the trial kept so far in tune p_tune (at first the baseline), overridden by the trial''s own p_settings';

CREATE OR REPLACE FUNCTION reco.tune_trial(p_scope int, p_tune text, p_stage text, p_settings jsonb)
RETURNS bigint
LANGUAGE sql AS $$
    SELECT reco._tune_trial(p_scope, p_tune, p_stage, p_settings)
$$;
COMMENT ON FUNCTION reco.tune_trial(int, text, text, jsonb) IS
$c$one trial of tune p_tune in evaluation scope p_scope (reco.evaluation_scope): set p_settings there, rebuild what
they change, rank the held-out users, store the run (kind tune) and its per-user NDCG@10; returns the run id.
Stages 'baseline' and 'floor' also rank each component alone. An EASE trial needs its weights from numpy first.$c$;

CREATE OR REPLACE FUNCTION reco.tune_pending(p_scope int, p_tune text, p_stage text)
RETURNS TABLE (incumbent bigint, best bigint, gain float8, se float8, confirm boolean, min_gain float8)
LANGUAGE sql AS $$
    SELECT * FROM reco._tune_pending(p_scope, p_tune, p_stage)
$$;
COMMENT ON FUNCTION reco.tune_pending(int, text, text) IS
$c$where stage p_stage of tune p_tune stands: the incumbent and the best trial, the paired NDCG@10 gain and its
standard error, whether to confirm on a second fold (the gain is positive but within tune_min_gain standard errors),
and that bar. No row when the stage ran no trial.$c$;

CREATE OR REPLACE FUNCTION reco.tune_keep_best(p_scope int, p_tune text, p_stage text, p_confirm bigint[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql AS $$
    SELECT reco._tune_keep_best(p_scope, p_tune, p_stage, p_confirm)
$$;
COMMENT ON FUNCTION reco.tune_keep_best(int, text, text, bigint[]) IS
$c$close stage p_stage of tune p_tune: keep its best trial when it beats the incumbent by more than tune_min_gain
standard errors (pooled with the second fold's runs of the incumbent and the best when p_confirm gives them), record
the decision in reco.tune_decisions, make the kept settings the scope's again (not those that need numpy: the caller
does); returns the kept settings of the stage, NULL when it ran no trial.$c$;

CREATE OR REPLACE FUNCTION reco.tune_full_settings(p_run bigint)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT reco._tune_full_settings(p_run)
$$;
COMMENT ON FUNCTION reco.tune_full_settings(bigint) IS
    'every setting the tune searches, as in force in trial run p_run: what a second fold is set to, to measure that trial there';

CREATE OR REPLACE FUNCTION reco.tune_restore(p_scope int, p_settings jsonb)
RETURNS void
LANGUAGE sql AS $$
    SELECT reco._tune_restore(p_scope, p_settings)
$$;
COMMENT ON FUNCTION reco.tune_restore(int, jsonb) IS
    'make p_settings the settings of evaluation scope p_scope again and rebuild what they change (interactions and user vectors for a τ, neighbours for a neighbour setting); ranks nothing';

CREATE OR REPLACE FUNCTION reco.tune_decide(p_tenant_id int, p_scope int, p_tune text, p_baseline bigint,
                                            p_apply boolean, p_skipped text[])
RETURNS jsonb
LANGUAGE sql AS $$
    SELECT reco._tune_decide(p_tenant_id, p_scope, p_tune, p_baseline, p_apply, p_skipped)
$$;
COMMENT ON FUNCTION reco.tune_decide(int, int, text, bigint, boolean, text[]) IS
$c$the decision of tune p_tune of tenant p_tenant_id, after its stages and its 'floor' trial: the tuned configuration
against the baseline run p_baseline, the component floor, the seen handling; applies the settings that changed when
p_apply (and no running experiment holds them), records the 'final' row of reco.tune_decisions and returns the
summary (p_skipped: the trials that could not run, listed in it).$c$;

CREATE OR REPLACE FUNCTION reco.tune_message(p_summary jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT reco._tune_message(p_summary)
$$;
COMMENT ON FUNCTION reco.tune_message(jsonb) IS
    'the one-line report of a tune (the job''s log, `reco tune`, `reco demo`) from the summary reco.tune or reco.tune_decide returned';
