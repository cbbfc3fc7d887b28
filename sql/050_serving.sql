-- Serving: recommend_features, starter_features, similar_features, recommend_plan, and
-- log_exposures. The read functions write nothing (they can run on a replica); they read only
-- indexed rows: the user, the user's interactions, the neighbours of those features, one HNSW
-- k-NN over user vectors, the prior and stats rows of the user's segments, bandit rows.

INSERT INTO reco.setting_definitions (key, default_value, description) VALUES
    ('weight_itemcf', '0.5', 'weight of ItemCF (Σ R(u,j)·S(j,i) over the features the user used)'),
    ('weight_usercf', '0.3', 'weight of UserCF (Σ sim(u,v)·R(v,i) over the nearest users, HNSW)'),
    ('weight_prior', '0.1', 'weight of the cohort prior (naive Bayes over the user''s segment attributes)'),
    ('weight_popularity', '0.1', 'weight of popularity × (0.5 + 0.5·success rate), segment first'),
    ('weight_session', '0.3', 'weight of the session boost from options.recent'),
    ('weight_explore', '0.3', 'weight of the Thompson-sampling draw for users with few interactions'),
    ('explore_below', '3', 'users with fewer interactions than this get exploration'),
    ('seen_factor', '0.2', 'score multiplier for features the user already uses (0 = never recommend them)'),
    ('mmr_lambda', '0.8', 'MMR λ: relevance vs. category diversity (1 = no diversity)'),
    ('user_neighbors', '20', 'nearest users read for UserCF'),
    ('candidates', '50', 'top features by segment popularity and by prior added to the candidates'),
    ('min_segment_users', '30', 'segment popularity and bandit arms are used when the segment has this many users'),
    ('plan_window_days', '30', 'days of recent usage reco.recommend_plan prices')
ON CONFLICT (key) DO UPDATE
    SET default_value = excluded.default_value, description = excluded.description;

-- ---------------------------------------------------------------------------------------
-- Beta sampling (Marsaglia-Tsang gamma) for Thompson sampling
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._gamma_sample(p_shape float8)
RETURNS float8
LANGUAGE plpgsql VOLATILE PARALLEL SAFE AS $$
DECLARE
    _d float8;
    _c float8;
    _x float8;
    _v float8;
    _u float8;
BEGIN
    IF p_shape < 1 THEN
        RETURN reco._gamma_sample(p_shape + 1) * power(random(), 1.0 / p_shape);
    END IF;
    _d := p_shape - 1.0 / 3;
    _c := 1.0 / sqrt(9 * _d);
    LOOP
        _x := sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random());
        _v := power(1 + _c * _x, 3);
        CONTINUE WHEN _v <= 0;
        _u := 1 - random();
        IF ln(_u) < 0.5 * _x * _x + _d - _d * _v + _d * ln(_v) THEN
            RETURN _d * _v;
        END IF;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION reco.beta_sample(p_alpha float8, p_beta float8)
RETURNS float8
LANGUAGE plpgsql VOLATILE PARALLEL SAFE AS $$
DECLARE
    _x float8 := reco._gamma_sample(greatest(p_alpha, 1e-3));
    _y float8 := reco._gamma_sample(greatest(p_beta, 1e-3));
BEGIN
    RETURN _x / nullif(_x + _y, 0);
END $$;
COMMENT ON FUNCTION reco.beta_sample(float8, float8) IS 'a random draw from Beta(α, β) (Thompson sampling)';

-- ---------------------------------------------------------------------------------------
-- Options and user context
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._check_options(p_k int, p_options jsonb, p_allowed text[])
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    _bad text;
BEGIN
    IF p_k IS NULL OR p_k < 1 OR p_k > 100 THEN
        RAISE EXCEPTION 'k must be between 1 and 100, got %', coalesce(p_k::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Ask for 1 to 100 recommendations.';
    END IF;
    IF p_options IS NULL OR jsonb_typeof(p_options) <> 'object' THEN
        RAISE EXCEPTION 'options must be a JSON object, got %', coalesce(jsonb_typeof(p_options), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ''{"exclude_seen": true}''';
    END IF;
    SELECT k INTO _bad FROM jsonb_object_keys(p_options) AS k WHERE k <> ALL (p_allowed) LIMIT 1;
    IF _bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown option "%"', _bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Options: ' || array_to_string(p_allowed, ', ') || '.';
    END IF;
    IF jsonb_typeof(p_options -> 'exclude_seen') NOT IN ('boolean', 'null')
       OR jsonb_typeof(p_options -> 'explore') NOT IN ('boolean', 'null') THEN
        RAISE EXCEPTION 'options.exclude_seen and options.explore must be booleans'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ''{"exclude_seen": true}''';
    END IF;
    IF jsonb_typeof(p_options -> 'recent') NOT IN ('array', 'null')
       OR jsonb_path_exists(coalesce(p_options -> 'recent', '[]'), '$[*] ? (@.type() != "string")') THEN
        RAISE EXCEPTION 'options.recent must be an array of feature ids'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ''{"recent": ["batch-mode"]}''';
    END IF;
    IF jsonb_typeof(p_options -> 'weights') NOT IN ('object', 'null')
       OR jsonb_path_exists(coalesce(p_options -> 'weights', '{}'), '$.* ? (@.type() != "number")')
       OR EXISTS (SELECT 1 FROM jsonb_object_keys(coalesce(p_options -> 'weights', '{}')) AS w
                  WHERE w NOT IN ('itemcf', 'usercf', 'prior', 'popularity', 'session', 'explore')) THEN
        RAISE EXCEPTION 'options.weights must map components to numbers'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Components: itemcf, usercf, prior, popularity, session, explore.';
    END IF;
    IF jsonb_typeof(p_options -> 'seed') NOT IN ('number', 'null')
       OR abs(coalesce((p_options ->> 'seed')::float8, 0)) > 1 THEN
        RAISE EXCEPTION 'options.seed must be a number between -1 and 1'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'It seeds the exploration draws (setseed).';
    END IF;
END $$;

-- The segment whose popularity and bandit arms serve a user: the first segment attribute (in
-- the order of setting segment_attributes) whose segment has min_segment_users, else '*'.
CREATE OR REPLACE FUNCTION reco._serving_segment(p_tenant_id int, p_paid boolean, p_attributes jsonb,
                                                 p_names text[], p_min_users int)
RETURNS TABLE (attribute text, value text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(min(x.attribute), '*'), coalesce(min(x.value), '*') FROM (
        SELECT s.attribute, s.value
        FROM reco._user_segments(p_paid, p_attributes, p_names) WITH ORDINALITY AS s(attribute, value, o)
        JOIN reco.segments g ON g.tenant_id = p_tenant_id AND g.attribute = s.attribute AND g.value = s.value
        WHERE g.users >= p_min_users AND s.attribute <> '*'
        ORDER BY s.o
        LIMIT 1
    ) AS x
$$;

-- ---------------------------------------------------------------------------------------
-- recommend_features
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.recommend_features(p_user_id text, p_k int DEFAULT 10,
                                                   p_options jsonb DEFAULT '{}',
                                                   p_tenant text DEFAULT NULL)
RETURNS TABLE (rank int, feature_id text, score float8, reasons jsonb)
LANGUAGE plpgsql VOLATILE PARALLEL SAFE
-- planning the scoring query costs more than running it: plan it once per session
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _cfg jsonb;
    _w jsonb;
    _user record;
    _names text[];
    _segs text[][];
    _pop_attr text := '*';
    _pop_value text := '*';
    _recent text[];
BEGIN
    PERFORM reco._check_options(p_k, p_options,
        '{exclude_seen,recent,explore,weights,seed,distinct_categories}');
    SELECT jsonb_object_agg(d.key, coalesce(s.value, d.default_value)) INTO _cfg
    FROM reco.setting_definitions d
    LEFT JOIN reco.settings s ON s.tenant_id = _tid AND s.key = d.key;
    _w := jsonb_build_object(
        'itemcf', _cfg -> 'weight_itemcf', 'usercf', _cfg -> 'weight_usercf',
        'prior', _cfg -> 'weight_prior', 'popularity', _cfg -> 'weight_popularity',
        'session', _cfg -> 'weight_session', 'explore', _cfg -> 'weight_explore')
        || coalesce(p_options -> 'weights', '{}');
    _recent := ARRAY(SELECT jsonb_array_elements_text(coalesce(p_options -> 'recent', '[]')));
    IF (p_options ->> 'seed') IS NOT NULL THEN
        PERFORM setseed((p_options ->> 'seed')::float8);
    END IF;

    SELECT u.user_key, u.paid, u.attributes INTO _user
    FROM reco.users u WHERE u.tenant_id = _tid AND u.user_id = p_user_id;
    _names := ARRAY(SELECT jsonb_array_elements_text(_cfg -> 'segment_attributes'));
    IF _user.user_key IS NOT NULL THEN
        SELECT g.attribute, g.value INTO _pop_attr, _pop_value
        FROM reco._serving_segment(_tid, _user.paid, _user.attributes, _names,
                                   (_cfg ->> 'min_segment_users')::int) AS g;
    END IF;

    RETURN QUERY
    WITH mine AS (
        SELECT i.feature_key, sqrt(i.weight / nullif(max(i.weight) OVER (), 0)) AS strength
        FROM reco.interactions i
        WHERE i.tenant_id = _tid AND i.user_key = _user.user_key
    ), ctx AS (
        -- exploration for users with few interactions (counted from the rows read above)
        SELECT coalesce((p_options ->> 'explore')::boolean, count(*) < (_cfg ->> 'explore_below')::int)
               AND (_w ->> 'explore')::float8 > 0 AS exploring
        FROM mine
    ), itemcf AS (
        SELECT n.neighbor_key AS fk, sum(m.strength * n.score) AS s,
               (array_agg(f.feature_id ORDER BY m.strength * n.score DESC))[1:3] AS because
        FROM mine m
        CROSS JOIN LATERAL (SELECT nn.neighbor_key, nn.score FROM reco.feature_neighbors nn
                            WHERE nn.tenant_id = _tid AND nn.feature_key = m.feature_key) AS n
        CROSS JOIN LATERAL (SELECT ff.feature_id FROM reco.features ff
                            WHERE ff.tenant_id = _tid AND ff.feature_key = m.feature_key) AS f
        GROUP BY n.neighbor_key
    ), session AS (
        SELECT n.neighbor_key AS fk, sum(n.score) AS s
        FROM reco.features f
        JOIN reco.feature_neighbors n ON n.tenant_id = _tid AND n.feature_key = f.feature_key
        WHERE f.tenant_id = _tid AND f.feature_id = ANY (_recent)
        GROUP BY n.neighbor_key
    ), query AS (
        SELECT l2_normalize(sum(ff.factor * array_fill(m.strength::real, ARRAY[64])::vector)) AS v
        FROM mine m
        JOIN reco.feature_factors ff ON ff.tenant_id = _tid AND ff.feature_key = m.feature_key
        WHERE (_w ->> 'usercf')::float8 > 0
    ), nearest AS (
        SELECT uv.user_key, 1 - (uv.embedding <=> q.v) AS sim
        FROM query q
        CROSS JOIN LATERAL (
            SELECT v.user_key, v.embedding FROM reco.user_vectors v
            WHERE v.tenant_id = _tid AND v.user_key <> _user.user_key
            ORDER BY v.embedding <=> q.v
            LIMIT (_cfg ->> 'user_neighbors')::int
        ) AS uv
        WHERE q.v IS NOT NULL
    ), usercf AS (
        SELECT t.feature_key AS fk, sum(nb.sim * t.strength) AS s
        FROM nearest nb
        CROSS JOIN LATERAL (
            SELECT i.feature_key, sqrt(i.weight / nullif(max(i.weight) OVER (), 0)) AS strength
            FROM reco.interactions i
            WHERE i.tenant_id = _tid AND i.user_key = nb.user_key
        ) AS t
        WHERE nb.sim > 0
        GROUP BY t.feature_key
    ), segs AS (
        SELECT s.attribute, s.value
        FROM reco._user_segments(_user.paid, _user.attributes, _names) AS s
        WHERE s.attribute <> '*' AND _user.user_key IS NOT NULL
    ), popular AS (
        SELECT st.feature_key AS fk, st.popularity * (0.5 + 0.5 * st.success_rate) AS s
        FROM reco.feature_stats st
        WHERE st.tenant_id = _tid AND st.attribute = _pop_attr AND st.value = _pop_value
        ORDER BY st.popularity DESC
        LIMIT (_cfg ->> 'candidates')::int
    ), prior_top AS (
        SELECT DISTINCT p.feature_key AS fk
        FROM segs
        CROSS JOIN LATERAL (
            SELECT cp.feature_key FROM reco.cohort_priors cp
            WHERE cp.tenant_id = _tid AND cp.attribute = segs.attribute AND cp.value = segs.value
            ORDER BY cp.prob DESC LIMIT (_cfg ->> 'candidates')::int
        ) AS p
    ), candidates AS (
        SELECT fk FROM itemcf UNION SELECT fk FROM usercf UNION SELECT fk FROM session
        UNION SELECT fk FROM popular UNION SELECT fk FROM prior_top
    ), scored AS (
        SELECT f.feature_key, f.feature_id, f.category,
               coalesce(ic.s, 0) AS itemcf, ic.because, coalesce(uc.s, 0) AS usercf,
               coalesce(se.s, 0) AS session,
               coalesce((SELECT exp(sum(ln(cp.prob))) FROM segs
                         JOIN reco.cohort_priors cp ON cp.tenant_id = _tid AND cp.attribute = segs.attribute
                              AND cp.value = segs.value AND cp.feature_key = c.fk), 0) AS prior,
               coalesce((SELECT st.popularity * (0.5 + 0.5 * st.success_rate) FROM reco.feature_stats st
                         WHERE st.tenant_id = _tid AND st.attribute = _pop_attr AND st.value = _pop_value
                           AND st.feature_key = c.fk), 0) AS popularity,
               m.strength IS NOT NULL AS seen,
               ctx.exploring,
               CASE WHEN ctx.exploring THEN coalesce(
                   (SELECT reco.beta_sample(b.alpha, b.beta) FROM reco.bandit_arms b
                    WHERE b.tenant_id = _tid AND b.segment = _pop_attr || '=' || _pop_value
                      AND b.feature_key = c.fk),
                   reco.beta_sample(1, 1)) ELSE 0 END AS explore
        FROM candidates c
        CROSS JOIN ctx
        JOIN reco.features f ON f.tenant_id = _tid AND f.feature_key = c.fk
        LEFT JOIN itemcf ic ON ic.fk = c.fk
        LEFT JOIN usercf uc ON uc.fk = c.fk
        LEFT JOIN session se ON se.fk = c.fk
        LEFT JOIN mine m ON m.feature_key = c.fk
        WHERE f.active AND (NOT f.requires_paid OR coalesce(_user.paid, false))
          AND NOT (m.strength IS NOT NULL AND coalesce((p_options ->> 'exclude_seen')::boolean, false))
    ), parts AS (
        -- each component normalised over the candidates (max = 1), then weighted
        SELECT sc.*,
               (_w ->> 'itemcf')::float8 * sc.itemcf / nullif(max(sc.itemcf) OVER (), 0) AS c_itemcf,
               (_w ->> 'usercf')::float8 * sc.usercf / nullif(max(sc.usercf) OVER (), 0) AS c_usercf,
               (_w ->> 'prior')::float8 * sc.prior / nullif(max(sc.prior) OVER (), 0) AS c_prior,
               (_w ->> 'popularity')::float8 * sc.popularity / nullif(max(sc.popularity) OVER (), 0) AS c_pop,
               (_w ->> 'session')::float8 * sc.session / nullif(max(sc.session) OVER (), 0) AS c_session,
               (_w ->> 'explore')::float8 * sc.explore AS c_explore
        FROM scored sc
    ), totals AS (
        SELECT p.*,
               (coalesce(p.c_itemcf, 0) + coalesce(p.c_usercf, 0) + coalesce(p.c_prior, 0)
                + coalesce(p.c_pop, 0) + coalesce(p.c_session, 0) + p.c_explore)
               * CASE WHEN p.seen THEN (_cfg ->> 'seen_factor')::float8 ELSE 1 END AS total
        FROM parts p
    ), diversified AS (
        -- MMR on category with similarity 1 within a category, 0 across: greedy selection
        -- reduces to ordering by λ·s - (1 - λ)·[not the best of its category]
        SELECT t.*, row_number() OVER (PARTITION BY t.category ORDER BY t.total DESC, t.feature_id) AS in_cat,
               t.total / nullif(max(t.total) OVER (), 0) AS rel
        FROM totals t
    )
    SELECT (row_number() OVER (ORDER BY
                CASE WHEN coalesce((p_options ->> 'distinct_categories')::boolean, false)
                     THEN (d.in_cat > 1)::int ELSE 0 END,
                (_cfg ->> 'mmr_lambda')::float8 * coalesce(d.rel, 0)
                    - (1 - (_cfg ->> 'mmr_lambda')::float8) * (d.in_cat > 1)::int DESC,
                d.total DESC, d.feature_id))::int AS rank,
           d.feature_id, d.total,
           jsonb_strip_nulls(jsonb_build_object(
               'itemcf', round(coalesce(d.c_itemcf, 0)::numeric, 4),
               'usercf', round(coalesce(d.c_usercf, 0)::numeric, 4),
               'prior', round(coalesce(d.c_prior, 0)::numeric, 4),
               'popularity', round(coalesce(d.c_pop, 0)::numeric, 4),
               'session', CASE WHEN cardinality(_recent) > 0 THEN round(coalesce(d.c_session, 0)::numeric, 4) END,
               'explore', CASE WHEN d.exploring THEN round(d.c_explore::numeric, 4) END,
               'because', CASE WHEN d.c_itemcf > 0 THEN to_jsonb(d.because) END,
               'seen', d.seen,
               'segment', _pop_attr || '=' || _pop_value,
               'category', d.category)) AS reasons
    FROM diversified d
    ORDER BY rank
    LIMIT p_k;
END $$;
COMMENT ON FUNCTION reco.recommend_features(text, int, jsonb, text) IS
$c$the features a user is most likely to use next: rank, feature_id, score and reasons (each component's
contribution, "because" = the user's features that led to it, the segment used). Hybrid of ItemCF, UserCF
(HNSW), cohort prior, segment popularity and the session (options.recent); seen features down-weighted
(options.exclude_seen removes them); inactive and (for free users) paid-only features removed; Thompson
sampling for users with few interactions; MMR on category. Options: exclude_seen, recent, explore, weights
{itemcf, usercf, prior, popularity, session, explore}, seed, distinct_categories. Writes nothing.
Example: SELECT * FROM reco.recommend_features('U42', 5);$c$;

-- ---------------------------------------------------------------------------------------
-- starter_features: a starter set for new users
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.starter_features(p_user_id text, p_k int DEFAULT 3,
                                                 p_tenant text DEFAULT NULL)
RETURNS TABLE (rank int, feature_id text, score float8, reasons jsonb)
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT * FROM reco.recommend_features(p_user_id, p_k,
        jsonb_build_object(
            'weights', jsonb_build_object('itemcf', 0, 'usercf', 0, 'session', 0, 'prior', 0.5,
                                          'popularity', 0.5,
                                          'explore', reco.setting('weight_explore', reco._tenant_id(p_tenant))),
            'explore', true, 'exclude_seen', true, 'distinct_categories', true),
        p_tenant)
$$;
COMMENT ON FUNCTION reco.starter_features(text, int, text) IS
$c$a starter set for a new user: cohort prior + popularity + exploration, k distinct categories where possible,
features already used left out. Example: SELECT * FROM reco.starter_features('U42');$c$;

-- ---------------------------------------------------------------------------------------
-- similar_features
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.similar_features(p_feature_id text, p_k int DEFAULT 5,
                                                 p_tenant text DEFAULT NULL)
RETURNS TABLE (rank int, feature_id text, score float8, source text)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _f record;
    _content vector;
BEGIN
    PERFORM reco._check_options(p_k, '{}', '{}');
    SELECT f.feature_key, f.category, f.tags, f.requires_paid, f.description, f.name, f.embedding INTO _f
    FROM reco.features f WHERE f.tenant_id = _tid AND f.feature_id = p_feature_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown feature "%"', p_feature_id
            USING ERRCODE = 'no_data_found',
                  HINT = 'Add it with reco.upsert_features, or check the id: SELECT feature_id FROM reco.features;';
    END IF;
    RETURN QUERY
    SELECT (row_number() OVER (ORDER BY n.rank))::int, g.feature_id, n.score, n.source
    FROM reco.feature_neighbors n
    JOIN reco.features g ON g.tenant_id = n.tenant_id AND g.feature_key = n.neighbor_key AND g.active
    WHERE n.tenant_id = _tid AND n.feature_key = _f.feature_key
    ORDER BY n.rank
    LIMIT p_k;
    IF FOUND THEN
        RETURN;
    END IF;
    -- a feature the jobs have not seen yet (added today): content neighbours, computed now
    SELECT e.content INTO _content FROM reco.feature_embeddings e
    WHERE e.tenant_id = _tid AND e.feature_key = _f.feature_key;
    IF _content IS NULL THEN
        _content := reco._content_embedding(_f.category, _f.tags, _f.requires_paid,
                                            coalesce(_f.description, '') || ' ' || _f.name, _f.embedding);
    END IF;
    RETURN QUERY
    SELECT (row_number() OVER (ORDER BY e.content <=> _content, g.feature_id))::int, g.feature_id,
           1 - (e.content <=> _content), 'content'::text
    FROM reco.feature_embeddings e
    JOIN reco.features g ON g.tenant_id = e.tenant_id AND g.feature_key = e.feature_key AND g.active
    WHERE e.tenant_id = _tid AND e.feature_key <> _f.feature_key
    ORDER BY e.content <=> _content, g.feature_id
    LIMIT p_k;
END $$;
COMMENT ON FUNCTION reco.similar_features(text, int, text) IS
$c$features similar to a feature: its ItemCF neighbours (source cf), content neighbours for features with
little usage (source content), computed on the spot for a feature the jobs have not seen yet.
Unknown feature: no_data_found. Example: SELECT * FROM reco.similar_features('background-removal', 5);$c$;

-- ---------------------------------------------------------------------------------------
-- recommend_plan
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.recommend_plan(p_user_id text, p_tenant text DEFAULT NULL)
RETURNS TABLE (rank int, plan_id text, name text, expected_monthly_cost numeric, fits boolean,
               reasons jsonb)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _days int := reco.setting('plan_window_days', _tid)::int;
    _user_key int;
    _uses bigint := 0;
    _paid_uses bigint := 0;
    _paid_features text[] := '{}';
BEGIN
    SELECT u.user_key INTO _user_key FROM reco.users u WHERE u.tenant_id = _tid AND u.user_id = p_user_id;
    IF _user_key IS NOT NULL THEN
        SELECT count(*), count(*) FILTER (WHERE f.requires_paid),
               coalesce(array_agg(DISTINCT f.feature_id) FILTER (WHERE f.requires_paid), '{}')
        INTO _uses, _paid_uses, _paid_features
        FROM reco.events e
        JOIN reco.features f ON f.tenant_id = e.tenant_id AND f.feature_key = e.feature_key
        WHERE e.tenant_id = _tid AND e.user_key = _user_key
          AND e.occurred_at >= now() - make_interval(days => _days) AND e.occurred_at <= now();
    END IF;
    RETURN QUERY
    SELECT (row_number() OVER (ORDER BY c.fits DESC, c.cost NULLS LAST, c.price, c.plan_id))::int,
           c.plan_id, c.name, c.cost, c.fits,
           jsonb_build_object(
               'monthly_uses', round(_uses * 30.0 / _days),
               'price', c.price, 'quota', c.quota, 'overage_price', c.overage_price,
               'overage_uses', greatest(0, round(_uses * 30.0 / _days) - coalesce(c.quota, 0))
                               * (c.quota IS NOT NULL)::int,
               'paid_features_used', to_jsonb(_paid_features),
               'why_not', CASE
                   WHEN _paid_uses > 0 AND NOT c.includes_paid_features THEN 'does not include paid-only features'
                   WHEN c.cost IS NULL THEN 'usage exceeds the quota and the plan has no overage' END)
    FROM (
        SELECT p.plan_id, p.name, p.price, p.quota, p.overage_price, p.includes_paid_features,
               CASE WHEN p.quota IS NULL OR round(_uses * 30.0 / _days) <= p.quota THEN p.price
                    WHEN p.overage_price IS NOT NULL
                        THEN p.price + (round(_uses * 30.0 / _days) - p.quota) * p.overage_price
               END AS cost,
               (p.includes_paid_features OR _paid_uses = 0)
               AND (p.quota IS NULL OR round(_uses * 30.0 / _days) <= p.quota OR p.overage_price IS NOT NULL)
               AS fits
        FROM reco.plans p WHERE p.tenant_id = _tid AND p.active
    ) AS c
    ORDER BY 1;
END $$;
COMMENT ON FUNCTION reco.recommend_plan(text, text) IS
$c$every active plan with the expected monthly cost of the user's usage over the last plan_window_days days
(scaled to 30 days): price + overage. Plans that fit (include the paid-only features the user uses; quota or
overage covers the usage) come first, cheapest first. Example: SELECT * FROM reco.recommend_plan('U42');$c$;

-- ---------------------------------------------------------------------------------------
-- log_exposures: what was shown (a write; the REST layer calls it with the recommendation)
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.log_exposures(p_request_id text, p_user_id text, p_feature_ids text[],
                                              p_variant text DEFAULT NULL, p_tenant text DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _user record;
    _segment text;
    _n int;
BEGIN
    IF reco._missing(p_request_id) OR reco._missing(p_user_id) THEN
        RAISE EXCEPTION 'request_id and user_id are required'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the id of the request that showed them.';
    END IF;
    INSERT INTO reco.users (tenant_id, user_id) VALUES (_tid, p_user_id)
    ON CONFLICT ON CONSTRAINT users_tenant_id_user_id_key DO NOTHING;
    SELECT u.user_key, u.paid, u.attributes INTO _user
    FROM reco.users u WHERE u.tenant_id = _tid AND u.user_id = p_user_id;
    SELECT g.attribute || '=' || g.value INTO _segment
    FROM reco._serving_segment(_tid, _user.paid, _user.attributes, reco._segment_attributes(_tid),
                               reco.setting('min_segment_users', _tid)::int) AS g;

    WITH shown AS (
        INSERT INTO reco.exposures (tenant_id, request_id, user_key, feature_key, rank, segment, variant)
        SELECT _tid, p_request_id, _user.user_key, f.feature_key, x.ord, _segment, p_variant
        FROM unnest(p_feature_ids) WITH ORDINALITY AS x(feature_id, ord)
        JOIN reco.features f ON f.tenant_id = _tid AND f.feature_id = x.feature_id
        RETURNING feature_key
    )
    -- an exposure counts as a failure until a use follows it (then ingest moves it to alpha)
    INSERT INTO reco.bandit_arms AS b (tenant_id, segment, feature_key, alpha, beta)
    SELECT _tid, _segment, feature_key, 1, 1 + count(*) FROM shown GROUP BY feature_key
    ORDER BY feature_key
    ON CONFLICT ON CONSTRAINT bandit_arms_pkey
        DO UPDATE SET beta = b.beta + excluded.beta - 1, updated_at = now();
    GET DIAGNOSTICS _n = ROW_COUNT;
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco.log_exposures(text, text, text[], text, text) IS
$c$record that features were shown to a user (request id, order = rank, experiment variant) and count them
in the bandit arms of the user's segment; a use within bandit_window moves the exposure to a success.
Example: SELECT reco.log_exposures('req-1', 'U42', ARRAY['batch-mode', 'upscale']);$c$;
