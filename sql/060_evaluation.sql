-- Offline evaluation: leave-one-out by time, measured with the real serving function.
--
-- An evaluation works in an evaluation scope: a tenant of its own (reco.tenants.evaluation_of =
-- the evaluated tenant) holding a copy of the users and features, the held-out pairs, and every
-- derived table rebuilt from the events that remain once the held-out ones are removed. The live
-- tables are only read. For each held-out user, reco.recommend_features ranks the top K with
-- seen features excluded, once per model (the hybrid, each component alone) and a popularity
-- baseline ranks them too; the rank of the held-out feature gives HitRate, MRR and NDCG.
--
--   reco.evaluate(k, users, settings, tenant)   everything in one call (CALL reco.run_job('evaluate'))
--   `reco evaluate`                             the same steps from Python, ranking on two connections

-- ---------------------------------------------------------------------------------------
-- Interactions from events
-- ---------------------------------------------------------------------------------------

-- Rebuild p_target's interactions from p_source's events, with p_target's decay settings and
-- epoch, leaving out the pairs held out in p_target (reco.evaluation_holdouts).
CREATE OR REPLACE FUNCTION reco._interactions_from_events(p_source int, p_target int)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _tau float8 := reco.setting('decay_tau_days', p_target)::float8 * 86400;
    _gamma float8 := reco.setting('success_bonus', p_target)::float8;
    _kinds jsonb := reco.setting('kind_weights', p_target);
    _t0 float8;
    _n bigint;
BEGIN
    SELECT extract(epoch FROM decay_epoch) INTO _t0 FROM reco.tenants WHERE tenant_id = p_target;
    DELETE FROM reco.interactions WHERE tenant_id = p_target;
    IF _t0 IS NULL THEN  -- no event ever
        RETURN 0;
    END IF;
    INSERT INTO reco.interactions (tenant_id, user_key, feature_key, weight, uses, successes, failures,
                                   first_at, last_at)
    SELECT p_target, e.user_key, e.feature_key,
           sum(reco._event_weight(e.kind, e.occurred_at, e.success, _t0, _tau, _gamma, _kinds)),
           count(*), count(*) FILTER (WHERE e.success), count(*) FILTER (WHERE NOT e.success),
           min(e.occurred_at), max(e.occurred_at)
    FROM reco.events e
    WHERE e.tenant_id = p_source
      AND NOT EXISTS (SELECT 1 FROM reco.evaluation_holdouts h
                      WHERE h.tenant_id = p_target AND h.user_key = e.user_key
                        AND e.feature_key IN (h.feature_key, h.masked_key))
    GROUP BY e.user_key, e.feature_key;
    GET DIAGNOSTICS _n = ROW_COUNT;
    ANALYZE reco.interactions;
    RETURN _n;
END $$;

CREATE OR REPLACE FUNCTION reco.rebuild_interactions(p_tenant text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
BEGIN
    -- as reco.rebase_epoch: waits for running ingests and holds new ones until commit
    LOCK TABLE reco.interactions IN SHARE ROW EXCLUSIVE MODE;
    RETURN reco._interactions_from_events(_tid, _tid);
END $$;
COMMENT ON FUNCTION reco.rebuild_interactions(text) IS
$c$recompute a tenant's reco.interactions from its events with the current settings (decay_tau_days,
success_bonus, kind_weights apply to new events only until this runs); returns the rows written.
Run the jobs afterwards. Example: SELECT reco.rebuild_interactions();$c$;

-- ---------------------------------------------------------------------------------------
-- Evaluation scope
-- ---------------------------------------------------------------------------------------

-- Create the evaluation scope of tenant p_source: hold out the most recently adopted feature of
-- p_users eligible users (all when 0, setting evaluation_users when NULL; a sample chosen by
-- p_seed), rebuild every derived table from
-- the remaining events. p_settings overrides settings in the scope (e.g. decay_tau_days).
-- p_embeddings false leaves the embeddings job to the caller (`reco evaluate` computes SVD
-- factors first for catalogs above 64 features). p_fold 1 makes the second fold: the second most
-- recent adoption is held out and the most recent one left out (masked_key) with all its events
-- (users with three features or more). Returns the scope's tenant id.
DROP FUNCTION IF EXISTS reco._evaluation_scope(int, int, text, jsonb, boolean);
CREATE OR REPLACE FUNCTION reco._evaluation_scope(p_source int, p_users int, p_seed text,
                                                  p_settings jsonb DEFAULT '{}', p_embeddings boolean DEFAULT true,
                                                  p_fold int DEFAULT 0)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    _slug text := format('eval-%s-%s', p_source, to_char(clock_timestamp(), 'YYYYMMDDHH24MISSUS'));
    _eval int;
    _key text;
BEGIN
    IF p_settings IS NULL OR jsonb_typeof(p_settings) <> 'object' THEN
        RAISE EXCEPTION 'evaluation settings must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ''{"decay_tau_days": 30}''';
    END IF;
    IF p_fold IS NULL OR p_fold NOT IN (0, 1) THEN
        RAISE EXCEPTION 'evaluation fold must be 0 or 1, got %', coalesce(p_fold::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = '0 holds out the latest adoption, 1 the one before it (the latest left out).';
    END IF;
    INSERT INTO reco.tenants (slug, decay_epoch, evaluation_of)
    SELECT _slug, t.decay_epoch, t.tenant_id FROM reco.tenants t WHERE t.tenant_id = p_source
    RETURNING tenant_id INTO _eval;
    INSERT INTO reco.settings (tenant_id, key, value)
    SELECT _eval, s.key, s.value FROM reco.settings s WHERE s.tenant_id = p_source;
    FOR _key IN SELECT jsonb_object_keys(p_settings) LOOP
        PERFORM reco.set_setting(_key, p_settings -> _key, _slug);
    END LOOP;

    -- the same users and features, under the same keys
    INSERT INTO reco.users (tenant_id, user_key, user_id, paid, attributes, created_at, updated_at)
    OVERRIDING SYSTEM VALUE
    SELECT _eval, user_key, user_id, paid, attributes, created_at, updated_at
    FROM reco.users WHERE tenant_id = p_source;
    INSERT INTO reco.features (tenant_id, feature_key, feature_id, name, category, requires_paid, tags,
                               description, active, embedding, created_at, updated_at)
    OVERRIDING SYSTEM VALUE
    SELECT _eval, feature_key, feature_id, name, category, requires_paid, tags, description, active,
           embedding, created_at, updated_at
    FROM reco.features WHERE tenant_id = p_source;
    -- the jobs below plan their reads of these rows: without statistics for them a new tenant looks
    -- empty (the content neighbours then sort every feature per little-used feature instead of an
    -- HNSW search)
    ANALYZE reco.users, reco.features;

    -- held out: per eligible user (two features or more; the last one still recommendable), the
    -- feature whose first use is the most recent, with all the user's events on it (fold 1: the one
    -- before it, the most recent left out too)
    PERFORM reco._progress('evaluate', p_source, 'holding out');
    INSERT INTO reco.evaluation_holdouts (tenant_id, user_key, feature_key, first_at, masked_key)
    SELECT _eval, l.user_key, l.feature_key, l.first_at, CASE WHEN p_fold = 1 THEN l.latest END
    FROM (
        SELECT i.user_key, i.feature_key, i.first_at,
               row_number() OVER w AS r, count(*) OVER (PARTITION BY i.user_key) AS n,
               first_value(i.feature_key) OVER w AS latest
        FROM reco.interactions i
        WHERE i.tenant_id = p_source
        WINDOW w AS (PARTITION BY i.user_key ORDER BY i.first_at DESC, i.feature_key DESC)
    ) AS l
    JOIN reco.users u ON u.tenant_id = p_source AND u.user_key = l.user_key
    JOIN reco.features f ON f.tenant_id = p_source AND f.feature_key = l.feature_key
    WHERE l.r = 1 + p_fold AND l.n >= 2 + p_fold AND f.active AND (NOT f.requires_paid OR u.paid)
    ORDER BY md5(p_seed || ':' || l.user_key)
    LIMIT nullif(greatest(coalesce(p_users, reco.setting('evaluation_users', p_source)::int), 0), 0);
    ANALYZE reco.evaluation_holdouts;

    -- everything the recommender reads, from the remaining events only
    PERFORM reco._progress('evaluate', p_source, 'interactions from the remaining events');
    PERFORM reco._interactions_from_events(p_source, _eval);
    -- exposures: a use that was held out is no use
    -- (those of ids not yet users keep their user_id)
    INSERT INTO reco.exposures (tenant_id, request_id, user_key, user_id, feature_keys, segment, variant, shown_at,
                                used_keys)
    SELECT _eval, x.request_id, x.user_key, x.user_id, x.feature_keys, x.segment, x.variant, x.shown_at,
           CASE WHEN h.user_key IS NULL THEN x.used_keys
                ELSE array_remove(array_remove(x.used_keys, h.feature_key), h.masked_key) END
    FROM reco.exposures x
    LEFT JOIN reco.evaluation_holdouts h ON h.tenant_id = _eval AND h.user_key = x.user_key
    WHERE x.tenant_id = p_source;
    PERFORM reco.job_feature_stats(_eval);
    PERFORM reco.job_cohort_priors(_eval);
    PERFORM reco.job_feature_neighbors(_eval);
    IF p_embeddings THEN
        PERFORM reco.job_embeddings(_eval);
    END IF;
    PERFORM reco._bandit_arms_from_exposures(_eval);
    RETURN _eval;
END $$;
COMMENT ON FUNCTION reco._evaluation_scope(int, int, text, jsonb, boolean, int) IS
    'internal: create an evaluation scope (a tenant with a leave-one-out copy of p_source) and return its id';

-- What each model asks of reco.recommend_features: seen features excluded; no exploration (its
-- random draws trade accuracy now for learning, which an offline split cannot reward), except in
-- hybrid_explore: the hybrid exactly as served, with repeatable draws, to show what exploring costs.
CREATE OR REPLACE FUNCTION reco._evaluation_options(p_model text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_model
        WHEN 'hybrid' THEN '{"exclude_seen": true, "explore": false}'::jsonb
        WHEN 'hybrid_explore' THEN '{"exclude_seen": true, "seed": 0.42}'::jsonb
        ELSE jsonb_build_object('exclude_seen', true, 'explore', false, 'weights',
            (SELECT jsonb_object_agg(c, (c = p_model)::int)
             FROM unnest(reco._component_names()) AS c))
    END
$$;

CREATE OR REPLACE FUNCTION reco._evaluation_models()
RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT '{hybrid}'::text[] || reco._component_names(true) || '{baseline,hybrid_explore}'::text[]
$$;

-- Rank the top p_k for the held-out users of scope p_eval (user keys p_from..p_to, all when NULL)
-- with one model: the serving function, or for 'baseline' the globally most popular features the
-- user has not used. p_options overrides the model's options (e.g. weights, for a grid).
CREATE OR REPLACE FUNCTION reco._evaluation_rank(p_eval int, p_model text, p_k int,
                                                 p_from int DEFAULT NULL, p_to int DEFAULT NULL,
                                                 p_options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _slug text := (SELECT slug FROM reco.tenants WHERE tenant_id = p_eval AND evaluation_of IS NOT NULL);
    _options jsonb := reco._evaluation_options(p_model) || coalesce(p_options, '{}');
    _n bigint;
BEGIN
    IF _slug IS NULL THEN
        RAISE EXCEPTION 'tenant % is not an evaluation scope', p_eval
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Create one with reco._evaluation_scope.';
    END IF;
    IF p_model <> ALL (reco._evaluation_models()) THEN
        RAISE EXCEPTION 'unknown model "%"', p_model
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Models: ' || array_to_string(reco._evaluation_models(), ', ') || '.';
    END IF;
    DELETE FROM reco.evaluation_ranks r
    WHERE r.tenant_id = p_eval AND r.model = p_model
      AND r.user_key BETWEEN coalesce(p_from, -2147483648) AND coalesce(p_to, 2147483647);
    IF p_model = 'baseline' THEN
        INSERT INTO reco.evaluation_ranks (tenant_id, model, user_key, hit_rank, items)
        SELECT p_eval, p_model, h.user_key, array_position(t.items, h.feature_key), t.items
        FROM reco.evaluation_holdouts h
        JOIN reco.users u ON u.tenant_id = p_eval AND u.user_key = h.user_key
        CROSS JOIN LATERAL (
            SELECT coalesce(array_agg(p.feature_key ORDER BY p.users DESC, p.feature_key), '{}') AS items
            FROM (SELECT st.feature_key, st.users
                  FROM reco.feature_stats st
                  JOIN reco.features f ON f.tenant_id = p_eval AND f.feature_key = st.feature_key
                  WHERE st.tenant_id = p_eval AND st.attribute = '*' AND st.value = '*'
                    AND f.active AND (NOT f.requires_paid OR u.paid)
                    AND NOT EXISTS (SELECT 1 FROM reco.interactions i WHERE i.tenant_id = p_eval
                                    AND i.user_key = h.user_key AND i.feature_key = st.feature_key)
                  ORDER BY st.users DESC, st.feature_key
                  LIMIT p_k) AS p
        ) AS t
        WHERE h.tenant_id = p_eval
          AND h.user_key BETWEEN coalesce(p_from, -2147483648) AND coalesce(p_to, 2147483647);
    ELSE
        INSERT INTO reco.evaluation_ranks (tenant_id, model, user_key, hit_rank, items)
        SELECT p_eval, p_model, h.user_key, array_position(t.items, h.feature_key), t.items
        FROM reco.evaluation_holdouts h
        JOIN reco.users u ON u.tenant_id = p_eval AND u.user_key = h.user_key
        CROSS JOIN LATERAL (
            SELECT coalesce(array_agg(f.feature_key ORDER BY r.rank), '{}') AS items
            FROM reco.recommend_features(u.user_id, p_k, _options, _slug) AS r
            JOIN reco.features f ON f.tenant_id = p_eval AND f.feature_id = r.feature_id
        ) AS t
        WHERE h.tenant_id = p_eval
          AND h.user_key BETWEEN coalesce(p_from, -2147483648) AND coalesce(p_to, 2147483647);
    END IF;
    GET DIAGNOSTICS _n = ROW_COUNT;
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco._evaluation_rank(int, text, int, int, int, jsonb) IS
    'internal: rank the top K for the held-out users of an evaluation scope with one model';

-- HitRate@K, MRR@K, NDCG@K (one relevant item: 1 / log2(rank + 1)) and catalog coverage (share
-- of the active features recommended to anyone) of every model ranked in scope p_eval.
CREATE OR REPLACE FUNCTION reco._evaluation_scores(p_eval int)
RETURNS TABLE (model text, users int, hit_rate float8, mrr float8, ndcg float8, coverage float8)
LANGUAGE sql STABLE AS $$
    SELECT r.model, count(*)::int,
           avg((r.hit_rank IS NOT NULL)::int)::float8,
           avg(coalesce(1.0 / r.hit_rank, 0))::float8,
           avg(coalesce(1.0 / log(2.0, r.hit_rank + 1.0), 0))::float8,
           (SELECT count(DISTINCT x)::float8 FROM reco.evaluation_ranks q CROSS JOIN unnest(q.items) AS x
            WHERE q.tenant_id = p_eval AND q.model = r.model)
           / nullif((SELECT count(*) FROM reco.features f WHERE f.tenant_id = p_eval AND f.active), 0)
    FROM reco.evaluation_ranks r
    WHERE r.tenant_id = p_eval
    GROUP BY r.model
    ORDER BY array_position(reco._evaluation_models(), r.model)
$$;

-- The numpy steps an evaluation scope of tenant p_tenant_id needs to compute what the tenant serves
-- (with p_settings overriding its settings): 'ease' when its neighbour model is EASE (a matrix
-- inverse) over more features than SQL inverts (reco._ease_in_sql), 'svd' when its active catalog exceeds the 64 dimensions of the user vectors (SVD
-- factors of the scope's own R: the live tenant's would have seen the held-out events). SQL alone
-- computes neither; `reco evaluate` and `reco tune` (Python) compute both.
CREATE OR REPLACE FUNCTION reco._evaluation_python_steps(p_tenant_id int, p_settings jsonb DEFAULT '{}')
RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT array_remove(ARRAY[
        CASE WHEN coalesce(p_settings -> 'neighbor_model', reco.setting('neighbor_model', p_tenant_id)) #>> '{}' = 'ease'
                  AND NOT reco._ease_in_sql(p_tenant_id)
             THEN 'ease' END,
        CASE WHEN (SELECT count(*) FROM reco.features f WHERE f.tenant_id = p_tenant_id AND f.active) > reco.vector_dims()
             THEN 'svd' END], NULL)
$$;
COMMENT ON FUNCTION reco._evaluation_python_steps(int, jsonb) IS
$c$internal: the numpy steps ('ease', 'svd') an evaluation or tune of the tenant needs to compute what it serves;
reco.evaluate, reco.tune and their jobs refuse (or defer to `reco jobs loop`) when it is not empty.$c$;

-- Refuse (feature_not_supported) an evaluation or tune from SQL of a tenant that needs numpy steps.
CREATE OR REPLACE FUNCTION reco._evaluation_require_sql(p_tenant_id int, p_settings jsonb, p_what text)
RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _steps text[] := reco._evaluation_python_steps(p_tenant_id, p_settings);
BEGIN
    IF cardinality(_steps) > 0 THEN
        RAISE EXCEPTION '% of tenant "%" needs %, which SQL cannot compute: it would store numbers for a model the tenant does not serve',
                        p_what, (SELECT slug FROM reco.tenants WHERE tenant_id = p_tenant_id),
                        array_to_string(ARRAY(SELECT CASE s WHEN 'ease' THEN 'EASE neighbour weights (numpy)'
                                                             ELSE 'SVD factors of a catalog above 64 features (numpy)' END
                                              FROM unnest(_steps) AS s), ' and ')
            USING ERRCODE = 'feature_not_supported',
                  HINT = format('Run it with `reco %s` (Python, numpy steps included); CALL reco.run_job(%L) queues it for `reco jobs loop`.',
                                p_what, p_what);
    END IF;
END $$;
COMMENT ON FUNCTION reco._evaluation_require_sql(int, jsonb, text) IS
    'internal: raise feature_not_supported (with the hint to run `reco evaluate` / `reco tune`) when an evaluation or tune of the tenant needs numpy';

-- How scope p_eval was computed, from what it holds: its neighbour model and who built the
-- neighbours (SQL, or numpy for EASE), how the user vectors' factors were made (exact one-hot in
-- SQL, SVD by numpy, or the random projection SQL puts in SVD's place), where the ranking ran, and
-- the steps that were deferred for lack of numpy (reco.job_queue rows of the scope: the job bodies
-- queue what they cannot compute and remove the row once they computed it).
-- p_python_steps: the numpy steps the caller computed for the scope ('ease', 'svd').
CREATE OR REPLACE FUNCTION reco._evaluation_provenance(p_eval int, p_python_steps jsonb DEFAULT '[]')
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'neighbor_model', reco.setting('neighbor_model', p_eval),
        'neighbors_k', reco.setting('neighbors_k', p_eval),
        'neighbors_by', CASE WHEN reco.setting('neighbor_model', p_eval) #>> '{}' <> 'ease' THEN 'sql'
                             WHEN p_python_steps ? 'ease' THEN 'numpy (jobs/ease.py)'
                             ELSE 'sql (reco._sql_ease_weights)' END,
        'factors', (SELECT coalesce(string_agg(DISTINCT ff.method, ','), 'none') FROM reco.feature_factors ff
                    WHERE ff.tenant_id = p_eval),
        'factors_by', (SELECT CASE string_agg(DISTINCT ff.method, ',') WHEN 'exact' THEN 'sql (one-hot, exact cosine)'
                                   WHEN 'svd' THEN 'numpy (jobs/svd.py)'
                                   WHEN 'random' THEN 'sql (random projection in place of SVD)' ELSE 'none' END
                       FROM reco.feature_factors ff WHERE ff.tenant_id = p_eval),
        'ranking', 'sql (reco.recommend_features)',
        'python_steps', p_python_steps,
        'not_computed', (SELECT coalesce(jsonb_agg(q.job || ': ' || q.reason ORDER BY q.job), '[]')
                         FROM reco.job_queue q WHERE q.tenant_id = p_eval))
$$;
COMMENT ON FUNCTION reco._evaluation_provenance(int, jsonb) IS
    'internal: how an evaluation scope was computed (neighbour model and by whom, factors, ranking, deferred steps): stored in reco.evaluation_runs.provenance';

-- Store the scores of scope p_eval as a run of its tenant, with the settings in force there and how
-- it was computed (reco._evaluation_provenance). A scope that could not compute a step the tenant's
-- model needs (EASE or SVD without numpy) is refused: its numbers would be those of another model.
CREATE OR REPLACE FUNCTION reco._evaluation_record(p_eval int, p_kind text, p_k int, p_options jsonb,
                                                   p_started timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _run bigint;
    -- the numpy steps computed for the scope: by this session (`reco tune`, reco.python_steps), or
    -- named by the caller (`reco evaluate` records on another connection than the scope's)
    _provenance jsonb := reco._evaluation_provenance(p_eval, (
        SELECT coalesce(jsonb_agg(DISTINCT s), '[]')
        FROM unnest(string_to_array(nullif(current_setting('reco.python_steps', true), ''), ',')
                    || ARRAY(SELECT jsonb_array_elements_text(coalesce(p_options -> 'python_steps', '[]')))) AS s));
BEGIN
    IF jsonb_array_length(_provenance -> 'not_computed') > 0 THEN
        RAISE EXCEPTION 'evaluation scope % could not compute what its tenant serves: %', p_eval,
                        (SELECT string_agg(x, '; ') FROM jsonb_array_elements_text(_provenance -> 'not_computed') AS x)
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Run it with `reco evaluate` or `reco tune` (Python computes the numpy steps); nothing was stored.';
    END IF;
    INSERT INTO reco.evaluation_runs (tenant, kind, k, users, settings, options, started_at, provenance)
    SELECT s.slug, p_kind, p_k,
           (SELECT count(*) FROM reco.evaluation_holdouts h WHERE h.tenant_id = p_eval),
           (SELECT jsonb_object_agg(d.key, reco.setting(d.key, p_eval)) FROM reco.setting_definitions d),
           coalesce(p_options, '{}'), p_started, _provenance
    FROM reco.tenants e JOIN reco.tenants s ON s.tenant_id = e.evaluation_of
    WHERE e.tenant_id = p_eval
    RETURNING run_id INTO _run;
    INSERT INTO reco.evaluation_results (run_id, model, users, hit_rate, mrr, ndcg, coverage)
    SELECT _run, sc.model, sc.users, sc.hit_rate, sc.mrr, sc.ndcg, sc.coverage
    FROM reco._evaluation_scores(p_eval) AS sc;
    RETURN _run;
END $$;
COMMENT ON COLUMN reco.evaluation_runs.provenance IS
    'how the run was computed: neighbour model and K, who built the neighbours (sql or numpy), the user-vector factors and who made them, where the ranking ran';

-- ---------------------------------------------------------------------------------------
-- reco.evaluate and the evaluate job
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.evaluate(p_k int DEFAULT 10, p_users int DEFAULT NULL,
                                         p_settings jsonb DEFAULT '{}', p_tenant text DEFAULT NULL)
RETURNS TABLE (run_id bigint, model text, users int, hit_rate float8, mrr float8, ndcg float8,
               coverage float8)
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _started timestamptz := clock_timestamp();
    _eval int;
    _model text;
    _run bigint;
BEGIN
    PERFORM reco._check_options(p_k, '{}', '{}');
    IF (SELECT evaluation_of FROM reco.tenants WHERE tenant_id = _tid) IS NOT NULL THEN
        RAISE EXCEPTION 'tenant "%" is an evaluation scope', p_tenant
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Evaluate the tenant it was made from.';
    END IF;
    PERFORM reco._evaluation_require_sql(_tid, p_settings, 'evaluate');
    _eval := reco._evaluation_scope(_tid, p_users, 'pgreco', p_settings);
    FOREACH _model IN ARRAY reco._evaluation_models() LOOP
        PERFORM reco._progress('evaluate', _tid, 'ranking: ' || _model);
        PERFORM reco._evaluation_rank(_eval, _model, p_k);
    END LOOP;
    _run := reco._evaluation_record(_eval, 'evaluate', p_k, jsonb_build_object('settings', p_settings), _started);
    PERFORM reco.drop_tenant((SELECT slug FROM reco.tenants WHERE tenant_id = _eval));
    RETURN QUERY
    SELECT r.run_id, r.model, r.users, r.hit_rate, r.mrr, r.ndcg, r.coverage
    FROM reco.evaluation_results r WHERE r.run_id = _run
    ORDER BY array_position(reco._evaluation_models(), r.model);
END $$;
COMMENT ON FUNCTION reco.evaluate(int, int, jsonb, text) IS
$c$offline evaluation, leave-one-out by time: for p_users eligible users (default: setting evaluation_users;
0 = all) the most recently adopted feature is held out with all their events on it, every derived table is
rebuilt from the remaining events in an evaluation scope, and the real serving function ranks the top p_k
(seen features excluded) for the hybrid and each component alone; a popularity baseline ranks too.
Returns HitRate@K, MRR@K, NDCG@K and catalog coverage per model, stored in reco.evaluation_runs and
reco.evaluation_results. p_settings overrides settings for this evaluation only (e.g. '{"mmr_lambda": 1}').
Example: SELECT * FROM reco.evaluate(10);$c$;

CREATE OR REPLACE FUNCTION reco.job_evaluate(p_tenant_id int)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _slug text := (SELECT slug FROM reco.tenants WHERE tenant_id = p_tenant_id);
    _done jsonb;
BEGIN
    IF reco._python_step('evaluate') THEN
        -- the Python runner evaluated just before, in this session, numpy steps included (jobs/evaluate.py)
        _done := nullif(current_setting('reco.evaluate_done', true), '')::jsonb -> _slug;
        PERFORM set_config('reco.job_message', coalesce(_done ->> 'message', ''), true);
        RETURN (_done ->> 'users')::bigint;
    END IF;
    IF cardinality(reco._evaluation_python_steps(p_tenant_id)) > 0 THEN
        PERFORM reco._defer(p_tenant_id, 'evaluate', format(
            'the evaluation needs %s (numpy): queued for `reco jobs loop`; nothing stored',
            array_to_string(reco._evaluation_python_steps(p_tenant_id), ' and ')));
        RETURN 0;
    END IF;
    RETURN (SELECT max(e.users)::bigint FROM reco.evaluate(10, NULL, '{}', _slug) AS e);
END $$;
COMMENT ON FUNCTION reco.job_evaluate(int) IS
$c$job body: reco.evaluate(10) for a tenant; returns the users evaluated. A tenant whose evaluation needs numpy
(EASE, SVD) is deferred to `reco jobs loop`, which evaluates it from Python.$c$;

CREATE OR REPLACE VIEW reco.evaluations AS
SELECT r.run_id, r.tenant, r.kind, r.k, r.started_at, r.finished_at - r.started_at AS took,
       x.model, x.users, round(x.hit_rate::numeric, 4) AS hit_rate, round(x.mrr::numeric, 4) AS mrr,
       round(x.ndcg::numeric, 4) AS ndcg, round(x.coverage::numeric, 4) AS coverage,
       r.settings, r.provenance
FROM reco.evaluation_runs r
JOIN reco.evaluation_results x USING (run_id);
COMMENT ON VIEW reco.evaluations IS
    'every evaluation run with its results, one row per model: SELECT * FROM reco.evaluations ORDER BY run_id DESC;';

-- ---------------------------------------------------------------------------------------
-- The evaluation's steps, public: what `reco evaluate` (jobs/evaluate.py) walks from Python, with
-- the ranking spread over several connections and the numpy steps between them. Thin wrappers of the
-- helpers above, which reco.evaluate and the tune use directly.
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.evaluation_scope(p_source int, p_users int, p_seed text,
                                                 p_settings jsonb DEFAULT '{}', p_embeddings boolean DEFAULT true,
                                                 p_fold int DEFAULT 0)
RETURNS int
LANGUAGE sql AS $$
    SELECT reco._evaluation_scope(p_source, p_users, p_seed, p_settings, p_embeddings, p_fold)
$$;
COMMENT ON FUNCTION reco.evaluation_scope(int, int, text, jsonb, boolean, int) IS
$c$create an evaluation scope of tenant p_source (its reco.tenant_id) and return the scope's tenant id: a tenant
holding a copy of the data with, for p_users held-out users (0: every eligible user, NULL: setting evaluation_users;
a sample drawn by p_seed), the most recently adopted feature held out (p_fold 1: the one before it, the latest left
out), and every derived table rebuilt from the remaining events. p_settings overrides settings in the scope;
p_embeddings false leaves the embeddings job to the caller (after its SVD factors). Rank it with
reco.evaluation_rank, store its scores with reco.evaluation_record, drop it with reco.drop_tenant(its slug).$c$;

CREATE OR REPLACE FUNCTION reco.evaluation_models()
RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT reco._evaluation_models()
$$;
COMMENT ON FUNCTION reco.evaluation_models() IS
    'the models an evaluation ranks, in report order: the hybrid, each component alone, the popularity baseline, the hybrid with exploration';

CREATE OR REPLACE FUNCTION reco.evaluation_rank(p_eval int, p_model text, p_k int,
                                                p_from int DEFAULT NULL, p_to int DEFAULT NULL,
                                                p_options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE sql AS $$
    SELECT reco._evaluation_rank(p_eval, p_model, p_k, p_from, p_to, p_options)
$$;
COMMENT ON FUNCTION reco.evaluation_rank(int, text, int, int, int, jsonb) IS
$c$rank the top p_k of the held-out users of evaluation scope p_eval (user keys p_from..p_to, every one when NULL)
with one model of reco.evaluation_models() (p_options overrides its options of reco.recommend_features, e.g.
weights); returns the users ranked. Not a scope, or an unknown model: invalid_parameter_value.$c$;

CREATE OR REPLACE FUNCTION reco.evaluation_scores(p_eval int)
RETURNS TABLE (model text, users int, hit_rate float8, mrr float8, ndcg float8, coverage float8)
LANGUAGE sql STABLE AS $$
    SELECT * FROM reco._evaluation_scores(p_eval)
$$;
COMMENT ON FUNCTION reco.evaluation_scores(int) IS
    'HitRate@K, MRR@K, NDCG@K and catalog coverage of every model ranked so far in evaluation scope p_eval (nothing is stored)';

CREATE OR REPLACE FUNCTION reco.evaluation_record(p_eval int, p_kind text, p_k int, p_options jsonb,
                                                  p_started timestamptz)
RETURNS bigint
LANGUAGE sql AS $$
    SELECT reco._evaluation_record(p_eval, p_kind, p_k, p_options, p_started)
$$;
COMMENT ON FUNCTION reco.evaluation_record(int, text, int, jsonb, timestamptz) IS
$c$store the scores of evaluation scope p_eval as a run of its tenant (reco.evaluation_runs and evaluation_results,
kind p_kind, with the settings in force there and how it was computed; p_options ->'python_steps' names the numpy
steps computed for it on another connection); returns the run id. A scope that could not compute what its tenant
serves (EASE or SVD without numpy) is refused: feature_not_supported, nothing stored.$c$;
