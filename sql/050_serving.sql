-- Serving: recommend_features, starter_features, similar_features, recommend_plan, and
-- log_exposures. The read functions write nothing (they can run on a replica); they read only
-- indexed rows: the user, the user's interactions, the neighbours of those features, one HNSW
-- k-NN over user vectors, the prior and stats rows of the user's segments, bandit rows.

-- ---------------------------------------------------------------------------------------
-- Beta sampling (Marsaglia-Tsang gamma) for Thompson sampling
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._gamma_sample(p_shape float8)
RETURNS float8
LANGUAGE plpgsql VOLATILE PARALLEL RESTRICTED AS $$
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
LANGUAGE plpgsql VOLATILE PARALLEL RESTRICTED AS $$
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
    SELECT o INTO _bad FROM unnest('{exclude_seen,explore,distinct_categories,reasons}'::text[]) AS o
    WHERE jsonb_typeof(p_options -> o) NOT IN ('boolean', 'null') LIMIT 1;
    IF _bad IS NOT NULL THEN
        RAISE EXCEPTION 'options.% must be a boolean', _bad
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ''{"exclude_seen": true}''';
    END IF;
    IF jsonb_typeof(p_options -> 'recent') NOT IN ('array', 'null')
       OR jsonb_path_exists(coalesce(p_options -> 'recent', '[]'), '$[*] ? (@.type() != "string")') THEN
        RAISE EXCEPTION 'options.recent must be an array of feature ids'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ''{"recent": ["batch-mode"]}''';
    END IF;
    IF jsonb_typeof(p_options -> 'weights') NOT IN ('object', 'null')
       OR jsonb_path_exists(coalesce(p_options -> 'weights', '{}'), '$.* ? (@.type() != "number" || @ < 0 || @ > 1000)')
       OR EXISTS (SELECT 1 FROM jsonb_object_keys(coalesce(p_options -> 'weights', '{}')) AS w
                  WHERE w <> ALL (reco._component_names())) THEN
        RAISE EXCEPTION 'options.weights must map components to numbers between 0 and 1000'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Components: %s.', array_to_string(reco._component_names(), ', '));
    END IF;
    IF jsonb_typeof(p_options -> 'scenario') NOT IN ('string', 'null') THEN
        RAISE EXCEPTION 'options.scenario must be the name of a scenario'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ''{"scenario": "home"}''';
    END IF;
    IF jsonb_typeof(p_options -> 'seed') NOT IN ('number', 'null')
       OR abs(coalesce((p_options ->> 'seed')::float8, 0)) > 1 THEN
        RAISE EXCEPTION 'options.seed must be a number between -1 and 1'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'It seeds the exploration draws (setseed).';
    END IF;
END $$;

DROP FUNCTION IF EXISTS reco._serving_segment(int, boolean, jsonb, text[], int);

-- ---------------------------------------------------------------------------------------
-- recommend_features
-- ---------------------------------------------------------------------------------------

-- The ranking, by tenant id, with what the REST layer records of it: each feature's key, the
-- user's key (NULL for a user never seen) and the serving segment. recommend_features is this
-- without the internal columns.
-- p_reasons false is options.reasons false without validating the options (the REST layer's
-- options need no checking when they are empty). p_overrides: settings in force for this call on
-- top of the tenant's (a scenario's and an experiment variant's, checked when they were stored).
DROP FUNCTION IF EXISTS reco._recommend(int, text, int, jsonb, boolean);
CREATE OR REPLACE FUNCTION reco._recommend(p_tenant_id int, p_user_id text, p_k int, p_options jsonb,
                                           p_reasons boolean DEFAULT true, p_overrides jsonb DEFAULT '{}')
RETURNS TABLE (rank int, feature_id text, score float8, reasons jsonb, feature_key int, user_key int,
               segment text)
-- volatile and parallel restricted: the exploration draws use random()
LANGUAGE plpgsql VOLATILE PARALLEL RESTRICTED
-- Planning the scoring query costs more than running it: it is planned once per session (a
-- generic plan). A generic plan cannot know that one user touches a handful of rows, so it is
-- made for index access only (on small tables the planner would otherwise prefer scanning and
-- hashing whole tables, which is what grows with the catalog and the user base), and never JIT.
-- Sorts only where nothing else gives the order (windows, top-N): aggregates hash their groups
-- (rows summed in the order read, whatever the statistics) and joins of the small sets hash.
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off SET jit = off AS $$
DECLARE
    _tid int := p_tenant_id;
    _cfg jsonb;
    _w_itemcf float8;
    _w_usercf float8;
    _w_prior float8;
    _w_pop float8;
    _w_session float8;
    _w_explore float8;
    _seen_factor float8;
    _lambda float8;
    _neighbors int;
    _candidates int;
    _shortlist int;
    _history int;
    _rows int;
    _exclude boolean;
    _explore_below int;
    _distinct boolean;
    _reasons boolean;
    _user_key int;
    _paid boolean := false;
    _attrs jsonb;
    _names text[];
    _seg_attr text[] := '{}';
    _seg_value text[] := '{}';
    _segment text := '*=*';
    _pop_attr text := '*';
    _pop_value text := '*';
    _recent text[] := '{}';
    _ucf_keys int[];
    _ucf_scores real[];
    _ses_keys int[];
    _ses_scores float8[];
    _attempt int;
BEGIN
    IF p_options IS DISTINCT FROM '{}'::jsonb OR p_k IS NULL OR p_k NOT BETWEEN 1 AND 100 THEN
        PERFORM reco._check_options(p_k, p_options,
            '{exclude_seen,recent,explore,weights,seed,distinct_categories,reasons,scenario}');
        IF (p_options ->> 'seed') IS NOT NULL THEN
            PERFORM setseed((p_options ->> 'seed')::float8);
        END IF;
        _recent := ARRAY(SELECT jsonb_array_elements_text(coalesce(p_options -> 'recent', '[]')));
        IF cardinality(_recent) > 0 THEN
            -- the session: Σ S(j, i) over the features in options.recent (a statement of its own:
            -- most calls have none, and the scoring query is initialised on every call)
            SELECT array_agg(x.fk), array_agg(x.s) INTO _ses_keys, _ses_scores
            FROM (SELECT n.neighbor_key AS fk, sum(n.score) AS s
                  FROM reco.features f
                  JOIN reco.feature_neighbors n ON n.tenant_id = p_tenant_id AND n.feature_key = f.feature_key
                  WHERE f.tenant_id = p_tenant_id AND f.feature_id = ANY (_recent)
                  GROUP BY n.neighbor_key) AS x;
        END IF;
    END IF;
    _distinct := coalesce((p_options ->> 'distinct_categories')::boolean, false);
    _exclude := coalesce((p_options ->> 'exclude_seen')::boolean, false);
    _reasons := p_reasons AND coalesce((p_options ->> 'reasons')::boolean, true);
    SELECT jsonb_object_agg(d.key, coalesce(s.value, d.default_value)) INTO _cfg
    FROM reco.setting_definitions d
    LEFT JOIN reco.settings s ON s.tenant_id = _tid AND s.key = d.key;
    IF p_overrides <> '{}' THEN
        _cfg := _cfg || p_overrides;
    END IF;
    -- typed once: the scoring query reads plain parameters, not JSON, per row. A stored value that cannot be read
    -- (written before reco.check_setting guarded every write, not yet mended by reco.repair_stored_settings)
    -- serves its default instead of failing every call.
    FOR _attempt IN 1 .. 2 LOOP
        BEGIN
            _w_itemcf := coalesce((p_options #>> '{weights,itemcf}')::float8, (_cfg ->> 'weight_itemcf')::float8);
            _w_usercf := coalesce((p_options #>> '{weights,usercf}')::float8, (_cfg ->> 'weight_usercf')::float8);
            _w_prior := coalesce((p_options #>> '{weights,prior}')::float8, (_cfg ->> 'weight_prior')::float8);
            _w_pop := coalesce((p_options #>> '{weights,popularity}')::float8, (_cfg ->> 'weight_popularity')::float8);
            _w_session := coalesce((p_options #>> '{weights,session}')::float8, (_cfg ->> 'weight_session')::float8);
            _w_explore := coalesce((p_options #>> '{weights,explore}')::float8, (_cfg ->> 'weight_explore')::float8);
            _seen_factor := (_cfg ->> 'seen_factor')::float8;
            _lambda := (_cfg ->> 'mmr_lambda')::float8;
            _neighbors := (_cfg ->> 'user_neighbors')::int;
            _candidates := (_cfg ->> 'candidates')::int;
            _shortlist := greatest(_candidates, 2 * p_k);
            _history := (_cfg ->> 'history_limit')::int;
            _rows := (_cfg ->> 'itemcf_rows')::int;
            _explore_below := (_cfg ->> 'explore_below')::int;
            EXIT;
        EXCEPTION WHEN data_exception THEN
            IF _attempt = 2 THEN
                RAISE;
            END IF;
            _cfg := reco.sane_settings(_cfg);
        END;
    END LOOP;

    SELECT u.user_key, u.paid, u.attributes INTO _user_key, _paid, _attrs
    FROM reco.users u WHERE u.tenant_id = _tid AND u.user_id = p_user_id;
    IF _user_key IS NOT NULL THEN
        _names := ARRAY(SELECT jsonb_array_elements_text(_cfg -> 'segment_attributes'));
        SELECT g.attributes, g.vals, g.serving_attribute, g.serving_value
        INTO _seg_attr, _seg_value, _pop_attr, _pop_value
        FROM reco._serving_segments(_tid, _paid, _attrs, _names, (_cfg ->> 'min_segment_users')::int) AS g;
        _segment := _pop_attr || '=' || _pop_value;
        -- UserCF as of the embeddings job; a user who had no interactions then is searched now
        IF _w_usercf > 0 THEN
            SELECT c.feature_keys, c.scores INTO _ucf_keys, _ucf_scores
            FROM reco.usercf_scores c WHERE c.tenant_id = _tid AND c.user_key = _user_key;
            IF NOT FOUND THEN
                -- for this call only: the function's SET clause restores the session's value
                PERFORM set_config('hnsw.ef_search', _cfg ->> 'hnsw_ef_search', true);
                SELECT c.feature_keys, c.scores INTO _ucf_keys, _ucf_scores
                FROM reco.user_vector_rows r
                CROSS JOIN LATERAL reco._usercf(_tid, _user_key, r.embedding, r.feature_keys, _neighbors) AS c
                WHERE r.tenant_id = _tid AND r.user_key = _user_key;
            END IF;
        END IF;
    END IF;

    RETURN QUERY
    WITH mine AS MATERIALIZED (
        -- the user's features (primary-key range): all of them mark what is seen
        SELECT i.feature_key AS fk, i.weight
        FROM reco.interactions i
        WHERE i.tenant_id = _tid AND i.user_key = _user_key
    ), strong AS MATERIALIZED (
        -- the strongest history_limit carry ItemCF, so a user with thousands of rows costs what one
        -- with history_limit costs (strength = sqrt of the weight relative to the user's largest,
        -- which is among them); a top-N sort, not a full one (4-8 % less time on MovieLens-100K)
        SELECT t.fk, sqrt(t.weight / nullif(max(t.weight) OVER (), 0)) AS strength
        FROM (SELECT m.fk, m.weight FROM mine m ORDER BY m.weight DESC, m.fk LIMIT _history) AS t
    ), itemcf AS (
        -- Σ strength(u, j)·S(j, i): the neighbour rows of the user's features, each feature's
        -- strongest itemcf_rows / n (by rank, an index range)
        SELECT n.neighbor_key AS fk, sum(m.strength * n.score) AS s
        FROM strong m
        JOIN reco.feature_neighbors n
          ON n.tenant_id = _tid AND n.feature_key = m.fk
         AND n.rank <= (SELECT greatest(ceil(_rows::float8 / nullif(count(*), 0)), 1)::int
                        FROM strong h)
        GROUP BY n.neighbor_key
    ), collab AS MATERIALIZED (
        -- one row per feature with a collaborative signal, or seen: the UserCF and session arrays
        -- and the user's rows have one entry per feature, so full joins, not an aggregate over
        -- their union (each value as the sum over that union was: itself)
        SELECT coalesce(c.fk, u.fk, s.fk, m.fk) AS fk, coalesce(c.s, 0) AS itemcf,
               coalesce(u.s, 0)::float8 AS usercf, coalesce(s.s, 0) AS session, m.fk IS NOT NULL AS seen
        FROM itemcf c
        FULL JOIN unnest(_ucf_keys, _ucf_scores) AS u(fk, s) ON u.fk = c.fk
        FULL JOIN unnest(_ses_keys, _ses_scores) AS s(fk, s) ON s.fk = coalesce(c.fk, u.fk)
        FULL JOIN mine m ON m.fk = coalesce(c.fk, u.fk, s.fk)
    ), cmax AS MATERIALIZED (
        -- each collaborative component's largest value over the candidates (its normaliser)
        SELECT coalesce(max(c.itemcf), 0) AS m_itemcf, coalesce(max(c.usercf), 0) AS m_usercf,
               coalesce(max(c.session), 0) AS m_session
        FROM collab c WHERE NOT (c.seen AND _exclude)
    ), shortlist AS MATERIALIZED (
        -- the candidates ranked in full: the top by the collaborative part of the score, and the
        -- top of the segment's popularity list and of each of its prior lists (indexed top-N; with
        -- exclude_seen, of the features the user does not have, through a hashed subplan over the
        -- rows read above: a heavy user's slots are not spent on what cannot be served), at least
        -- 2·k of each, as one sorted array: the lookups below read each table once for all of them
        -- (one index scan per table with feature_key = ANY (array), not one descent per candidate,
        -- nor the tenant's whole range as a generic plan would merge-join it)
        SELECT array_agg(DISTINCT y.fk ORDER BY y.fk) AS keys FROM (
            (SELECT c.fk FROM collab c CROSS JOIN cmax m
             WHERE NOT (c.seen AND _exclude) AND (c.itemcf > 0 OR c.usercf > 0 OR c.session > 0)
             ORDER BY (_w_itemcf * coalesce(c.itemcf / nullif(m.m_itemcf, 0), 0)
                       + _w_usercf * coalesce(c.usercf / nullif(m.m_usercf, 0), 0)
                       + _w_session * coalesce(c.session / nullif(m.m_session, 0), 0))
                      * CASE WHEN c.seen THEN _seen_factor ELSE 1 END DESC, c.fk
             LIMIT _shortlist)
            UNION ALL
            (SELECT st.feature_key FROM reco.feature_stats st
             WHERE st.tenant_id = _tid AND st.attribute = _pop_attr AND st.value = _pop_value
               AND NOT (_exclude AND st.feature_key IN (SELECT m.fk FROM mine m))
             ORDER BY st.popularity DESC LIMIT _shortlist)
            UNION ALL
            SELECT p.feature_key
            FROM unnest(_seg_attr, _seg_value) AS s(attribute, value)
            CROSS JOIN LATERAL (
                SELECT cp.feature_key FROM reco.cohort_priors cp
                WHERE cp.tenant_id = _tid AND cp.attribute = s.attribute AND cp.value = s.value
                  AND NOT (_exclude AND cp.feature_key IN (SELECT m.fk FROM mine m))
                ORDER BY cp.prob DESC LIMIT _shortlist) AS p
        ) AS y
    ), feats AS MATERIALIZED (
        SELECT f.feature_key AS fk, f.feature_id, f.category
        FROM reco.features f
        WHERE f.tenant_id = _tid AND f.feature_key = ANY ((SELECT sl.keys FROM shortlist sl)::int[])
          AND f.active AND (NOT f.requires_paid OR coalesce(_paid, false))
    ), priors AS MATERIALIZED (
        -- Π P(i | a = u.a) over the user's segment attributes, for the shortlist
        SELECT cp.feature_key AS fk,
               CASE WHEN count(*) = cardinality(_seg_attr) THEN exp(sum(ln(cp.prob))) ELSE 0 END AS prior
        FROM unnest(_seg_attr, _seg_value) AS s(attribute, value)
        JOIN reco.cohort_priors cp ON cp.tenant_id = _tid AND cp.attribute = s.attribute AND cp.value = s.value
                                  AND cp.feature_key = ANY ((SELECT sl.keys FROM shortlist sl)::int[])
        GROUP BY cp.feature_key
    ), pop AS MATERIALIZED (
        SELECT st.feature_key AS fk, st.popularity * (0.5 + 0.5 * st.success_rate) AS popularity
        FROM reco.feature_stats st
        WHERE st.tenant_id = _tid AND st.attribute = _pop_attr AND st.value = _pop_value
          AND st.feature_key = ANY ((SELECT sl.keys FROM shortlist sl)::int[])
    ), ex AS MATERIALIZED (
        -- exploration for users with few interactions (counted from the rows read above, at
        -- most explore_below of them)
        SELECT coalesce((p_options ->> 'explore')::boolean,
                        (SELECT count(*) FROM (SELECT FROM mine LIMIT greatest(_explore_below, 0)) AS x)
                        < _explore_below)
               AND _w_explore > 0 AS on
    ), arms AS MATERIALIZED (
        SELECT b.feature_key AS fk, b.alpha, b.beta
        FROM reco.bandit_arms b
        WHERE (SELECT e.on FROM ex e) AND b.tenant_id = _tid AND b.segment = _segment
          AND b.feature_key = ANY ((SELECT sl.keys FROM shortlist sl)::int[])
    ), scored AS MATERIALIZED (
        -- in feature-key order: the exploration draws (random()) are made in that order
        SELECT f.fk AS feature_key, f.feature_id, f.category, coalesce(c.itemcf, 0) AS itemcf,
               coalesce(c.usercf, 0) AS usercf, coalesce(c.session, 0) AS session, coalesce(c.seen, false) AS seen,
               coalesce(pr.prior, 0) AS prior,
               coalesce(st.popularity, 0) AS popularity,
               -- NULL when the user is not exploring
               CASE WHEN ex.on THEN reco.beta_sample(coalesce(b.alpha, 1), coalesce(b.beta, 1)) END AS explore
        FROM feats f
        CROSS JOIN ex
        LEFT JOIN collab c ON c.fk = f.fk
        LEFT JOIN priors pr ON pr.fk = f.fk
        LEFT JOIN pop st ON st.fk = f.fk
        LEFT JOIN arms b ON b.fk = f.fk
        WHERE NOT (coalesce(c.seen, false) AND _exclude)
        ORDER BY f.fk
    ), maxima AS (
        -- the largest value of each component over the candidates, and the weight of the
        -- components with any evidence for this user (the same for every candidate)
        SELECT sc.*, m.m_itemcf, m.m_usercf, m.m_prior, m.m_pop, m.m_session,
               coalesce(nullif((m.m_itemcf > 0)::int * _w_itemcf + (m.m_usercf > 0)::int * _w_usercf
                               + (m.m_prior > 0)::int * _w_prior + (m.m_pop > 0)::int * _w_pop
                               + (m.m_session > 0)::int * _w_session, 0), 1) AS present
        FROM scored sc
        CROSS JOIN (SELECT cm.m_itemcf, cm.m_usercf, cm.m_session, max(s.prior) AS m_prior,
                           max(s.popularity) AS m_pop
                    FROM scored s CROSS JOIN cmax cm
                    GROUP BY cm.m_itemcf, cm.m_usercf, cm.m_session) AS m
    ), totals AS MATERIALIZED (
        -- each component normalised over the candidates (max = 1), weighted, and the weights
        -- renormalised over the components that have any evidence for this user (a user without
        -- events is ranked by prior and popularity at full strength, not at a tenth of it);
        -- the exploration draw is added on that scale
        SELECT c.*, (coalesce(c.c_itemcf, 0) + coalesce(c.c_usercf, 0) + coalesce(c.c_prior, 0)
                     + coalesce(c.c_pop, 0) + coalesce(c.c_session, 0) + c.c_explore)
                    * CASE WHEN c.seen THEN _seen_factor ELSE 1 END AS total
        FROM (
            SELECT x.feature_key, x.feature_id, x.category, x.seen, x.explore IS NOT NULL AS exploring,
                   _w_itemcf * x.itemcf / nullif(x.m_itemcf, 0) / x.present AS c_itemcf,
                   _w_usercf * x.usercf / nullif(x.m_usercf, 0) / x.present AS c_usercf,
                   _w_prior * x.prior / nullif(x.m_prior, 0) / x.present AS c_prior,
                   _w_pop * x.popularity / nullif(x.m_pop, 0) / x.present AS c_pop,
                   _w_session * x.session / nullif(x.m_session, 0) / x.present AS c_session,
                   _w_explore * coalesce(x.explore, 0) AS c_explore
            FROM maxima x
        ) AS c
    ), top AS (
        -- MMR on category with similarity 1 within a category, 0 across: greedy selection
        -- reduces to ordering by λ·s - (1 - λ)·[not the best of its category]
        SELECT (row_number() OVER w)::int AS rank, d.*
        FROM (SELECT t.*, row_number() OVER (PARTITION BY t.category ORDER BY t.total DESC, t.feature_id) > 1 AS repeat,
                     max(t.total) OVER () AS best
              FROM totals t) AS d
        WINDOW w AS (ORDER BY CASE WHEN _distinct THEN d.repeat::int ELSE 0 END,
                              _lambda * coalesce(d.total / nullif(d.best, 0), 0) - (1 - _lambda) * d.repeat::int DESC,
                              d.total DESC, d.feature_id)
        ORDER BY CASE WHEN _distinct THEN d.repeat::int ELSE 0 END,
                 _lambda * coalesce(d.total / nullif(d.best, 0), 0) - (1 - _lambda) * d.repeat::int DESC,
                 d.total DESC, d.feature_id
        LIMIT p_k
    ), because AS MATERIALIZED (
        -- the user's features that led to each recommendation, for all of them at once: the
        -- targets' own collaborative neighbour rows (≤ K each, by index), with the user's strength
        -- among the strongest history_limit (a hash join: the full join and its non-strict filter
        -- keep a generic plan from making it a nested loop over the user's rows); top 3 by contribution
        SELECT g.target, jsonb_agg(f.feature_id ORDER BY g.contribution DESC, g.fk) AS ids
        FROM (SELECT n.target, n.fk, m.strength * n.score AS contribution,
                     row_number() OVER (PARTITION BY n.target ORDER BY m.strength * n.score DESC, n.fk) AS r
              FROM (SELECT t.feature_key AS target, nb.feature_key AS fk, nb.score
                    FROM top t
                    CROSS JOIN LATERAL (SELECT x.feature_key, x.score FROM reco.feature_neighbors x
                                        WHERE x.tenant_id = _tid AND x.neighbor_key = t.feature_key
                                          AND x.source = 'cf' OFFSET 0) AS nb
                    WHERE _reasons AND t.c_itemcf > 0) AS n
              FULL JOIN (SELECT h.fk, h.strength FROM strong h) AS m ON m.fk = n.fk
              WHERE coalesce(n.target, -1) >= 0 AND coalesce(m.strength, -1) >= 0) AS g
        JOIN reco.features f ON f.tenant_id = _tid AND f.feature_key = g.fk
        WHERE g.r <= 3
        GROUP BY g.target
    )
    SELECT t.rank, t.feature_id, t.total,
           CASE WHEN NOT _reasons THEN jsonb_build_object('segment', _segment) ELSE
           jsonb_strip_nulls(jsonb_build_object(
               'itemcf', round(coalesce(t.c_itemcf, 0) * 10000) / 10000,
               'usercf', round(coalesce(t.c_usercf, 0) * 10000) / 10000,
               'prior', round(coalesce(t.c_prior, 0) * 10000) / 10000,
               'popularity', round(coalesce(t.c_pop, 0) * 10000) / 10000,
               'session', CASE WHEN cardinality(_recent) > 0 THEN round(coalesce(t.c_session, 0) * 10000) / 10000 END,
               'explore', CASE WHEN t.exploring THEN round(t.c_explore * 10000) / 10000 END,
               'because', bc.ids,
               'seen', t.seen,
               'segment', _segment,
               'category', t.category)) END AS reasons,
           t.feature_key, _user_key, _segment
    FROM top t
    LEFT JOIN because bc ON bc.target = t.feature_key
    ORDER BY t.rank;
END $$;

-- What a request is served: the scenario's settings (options.scenario), and for a user in one of
-- its running experiments, the variant's (reco._assignment); an interleaving experiment merges
-- both variants' rankings by team draft: the side with fewer picks (a coin flip on a tie) adds its
-- best feature not yet taken, and each row says which side (0: control, 1: treatment) it came
-- from, for the exposure's attribution. (Called through reco._serve.)
CREATE OR REPLACE FUNCTION reco._serve_scenario(p_tenant_id int, p_user_id text, p_k int, p_options jsonb,
                                                p_reasons boolean DEFAULT true)
RETURNS TABLE (rank int, feature_id text, score float8, reasons jsonb, feature_key int, user_key int,
               segment text, scenario text, experiment_id int, variant text, side smallint)
LANGUAGE plpgsql VOLATILE PARALLEL RESTRICTED AS $$
DECLARE
    _scenario text := 'default';
    _options jsonb := p_options;
    _base jsonb := '{}';
    _exp int;
    _kind text;
    _variant text;
    _variant_b text;
    _ov jsonb := '{}';
    _ov_b jsonb;
    _la jsonb;
    _lb jsonb;
    _ia int := 0;
    _ib int := 0;
    _na int := 0;
    _nb int := 0;
    _taken int[] := '{}';
    _pick jsonb;
    _from_a boolean;
    _out jsonb := '[]';
BEGIN
    IF jsonb_typeof(p_options) = 'object' AND p_options ? 'scenario' THEN
        PERFORM reco._check_options(p_k, p_options,
            '{exclude_seen,recent,explore,weights,seed,distinct_categories,reasons,scenario}');
        _scenario := p_options ->> 'scenario';
        _options := p_options - 'scenario';
        _base := reco._scenario_overrides(p_tenant_id, _scenario);
    END IF;
    -- no running experiment anywhere in the tenant's scenario: one index probe, no hashing
    IF EXISTS (SELECT 1 FROM reco.experiments x
               WHERE x.tenant_id = p_tenant_id AND x.scenario = _scenario AND x.status = 'running') THEN
        SELECT a.experiment_id, a.kind, a.variant, a.side_b, a.overrides, a.overrides_b
        INTO _exp, _kind, _variant, _variant_b, _ov, _ov_b
        FROM reco._assignment(p_tenant_id, _scenario, p_user_id) AS a;
    END IF;
    IF _exp IS NULL OR _kind = 'ab' THEN
        RETURN QUERY
            SELECT r.*, _scenario, _exp, _variant, NULL::smallint
            FROM reco._recommend(p_tenant_id, p_user_id, p_k, _options, p_reasons,
                                 _base || coalesce(_ov, '{}')) AS r;
        RETURN;
    END IF;
    SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.rank), '[]') INTO _la
    FROM reco._recommend(p_tenant_id, p_user_id, p_k, _options, p_reasons, _base || _ov) AS r;
    SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.rank), '[]') INTO _lb
    FROM reco._recommend(p_tenant_id, p_user_id, p_k, _options, p_reasons, _base || _ov_b) AS r;
    WHILE jsonb_array_length(_out) < p_k LOOP
        -- skip what the other side already took
        WHILE _ia < jsonb_array_length(_la) AND (_la -> _ia ->> 'feature_key')::int = ANY (_taken) LOOP
            _ia := _ia + 1;
        END LOOP;
        WHILE _ib < jsonb_array_length(_lb) AND (_lb -> _ib ->> 'feature_key')::int = ANY (_taken) LOOP
            _ib := _ib + 1;
        END LOOP;
        EXIT WHEN _ia >= jsonb_array_length(_la) AND _ib >= jsonb_array_length(_lb);
        _from_a := _ib >= jsonb_array_length(_lb)
                   OR (_ia < jsonb_array_length(_la) AND (_na < _nb OR (_na = _nb AND random() < 0.5)));
        IF _from_a THEN
            _pick := (_la -> _ia) || '{"side": 0}';
            _na := _na + 1;
        ELSE
            _pick := (_lb -> _ib) || '{"side": 1}';
            _nb := _nb + 1;
        END IF;
        _taken := _taken || (_pick ->> 'feature_key')::int;
        _out := _out || jsonb_build_array(_pick || jsonb_build_object('rank', jsonb_array_length(_out) + 1));
    END LOOP;
    RETURN QUERY
        SELECT (x ->> 'rank')::int, x ->> 'feature_id', (x ->> 'score')::float8,
               CASE WHEN x -> 'reasons' = 'null' THEN NULL ELSE x -> 'reasons' END,
               (x ->> 'feature_key')::int, (x ->> 'user_key')::int, x ->> 'segment', _scenario, _exp,
               CASE WHEN (x ->> 'side')::int = 0 THEN _variant ELSE _variant_b END, (x ->> 'side')::smallint
        FROM jsonb_array_elements(_out) AS x;
END $$;

-- A request with no scenario, in a tenant with no experiment running outside scenarios, is the
-- tenant's settings as they are: reco._recommend, without reco._serve_scenario's plpgsql layer (up
-- to a tenth of a call).
CREATE OR REPLACE FUNCTION reco._plain_request(p_tenant_id int, p_options jsonb)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT NOT coalesce(jsonb_typeof(p_options) = 'object' AND p_options ? 'scenario', false)
           AND NOT EXISTS (SELECT 1 FROM reco.experiments x
                           WHERE x.tenant_id = p_tenant_id AND x.scenario = 'default' AND x.status = 'running')
$$;

-- What every request is served (recommend_features, api_serve): a one-time filter picks the plain
-- ranking or the scenario and experiment path.
CREATE OR REPLACE FUNCTION reco._serve(p_tenant_id int, p_user_id text, p_k int, p_options jsonb,
                                       p_reasons boolean DEFAULT true)
RETURNS TABLE (rank int, feature_id text, score float8, reasons jsonb, feature_key int, user_key int,
               segment text, scenario text, experiment_id int, variant text, side smallint)
LANGUAGE sql VOLATILE PARALLEL RESTRICTED AS $$
    SELECT p.*, 'default'::text, NULL::int, NULL::text, NULL::smallint
    FROM reco._recommend(p_tenant_id, p_user_id, p_k, p_options, p_reasons) AS p
    WHERE reco._plain_request(p_tenant_id, p_options)
    UNION ALL
    SELECT s.* FROM reco._serve_scenario(p_tenant_id, p_user_id, p_k, p_options, p_reasons) AS s
    WHERE NOT reco._plain_request(p_tenant_id, p_options)
$$;

CREATE OR REPLACE FUNCTION reco.recommend_features(p_user_id text, p_k int DEFAULT 10,
                                                   p_options jsonb DEFAULT '{}',
                                                   p_tenant text DEFAULT NULL)
RETURNS TABLE (rank int, feature_id text, score float8, reasons jsonb)
LANGUAGE sql VOLATILE PARALLEL RESTRICTED AS $$
    SELECT r.rank, r.feature_id, r.score, r.reasons
    FROM reco._serve(reco._tenant_id(p_tenant), p_user_id, p_k, p_options) AS r
$$;
COMMENT ON FUNCTION reco.recommend_features(text, int, jsonb, text) IS
$c$the features a user is most likely to use next: rank, feature_id, score and reasons (each component's
contribution, "because" = the user's features that led to it, the segment used). Hybrid of ItemCF, UserCF
(reco.usercf_scores, as of the embeddings job; HNSW now for users new since), cohort prior, segment popularity and the session (options.recent); seen features down-weighted
(options.exclude_seen removes them); inactive and (for free users) paid-only features removed; Thompson
sampling for users with few interactions; MMR on category. Options: scenario (its setting overrides, and the
experiments running in it), exclude_seen, recent, explore, weights
{itemcf, usercf, prior, popularity, session, explore}, seed, distinct_categories. Writes nothing.
Example: SELECT * FROM reco.recommend_features('U42', 5);$c$;

-- ---------------------------------------------------------------------------------------
-- starter_features: a starter set for new users
-- ---------------------------------------------------------------------------------------

-- What a starter set asks of recommend_features: prior and popularity, exploration, seen
-- features left out, distinct categories first.
CREATE OR REPLACE FUNCTION reco._starter_options(p_tenant text)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'weights', jsonb_build_object('itemcf', 0, 'usercf', 0, 'session', 0, 'prior', 0.5, 'popularity', 0.5,
                                      'explore', reco.setting('weight_explore', reco._tenant_id(p_tenant))),
        'explore', true, 'exclude_seen', true, 'distinct_categories', true)
$$;

CREATE OR REPLACE FUNCTION reco.starter_features(p_user_id text, p_k int DEFAULT 3,
                                                 p_tenant text DEFAULT NULL)
RETURNS TABLE (rank int, feature_id text, score float8, reasons jsonb)
LANGUAGE sql VOLATILE PARALLEL RESTRICTED AS $$
    SELECT * FROM reco.recommend_features(p_user_id, p_k, reco._starter_options(p_tenant), p_tenant)
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
LANGUAGE plpgsql STABLE PARALLEL SAFE
-- index access only, as recommend_features
SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off AS $$
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
LANGUAGE plpgsql STABLE PARALLEL SAFE
-- index access only, as recommend_features
SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off AS $$
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
        -- the user's uses per day (UTC) over the window: at most plan_window_days rows, however
        -- many events they are
        SELECT coalesce(sum(d.uses), 0), coalesce(sum(d.paid_uses), 0) INTO _uses, _paid_uses
        FROM reco.user_daily_uses d
        WHERE d.tenant_id = _tid AND d.user_key = _user_key
          AND d.day > (now() AT TIME ZONE 'UTC')::date - _days AND d.day <= (now() AT TIME ZONE 'UTC')::date;
        -- the paid-only features used in the window: the user's rows, one per feature
        SELECT coalesce(array_agg(f.feature_id ORDER BY f.feature_id), '{}') INTO _paid_features
        FROM reco.interactions i
        JOIN reco.features f ON f.tenant_id = i.tenant_id AND f.feature_key = i.feature_key
        WHERE i.tenant_id = _tid AND i.user_key = _user_key AND f.requires_paid
          AND i.last_at > now() - make_interval(days => _days);
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

-- Append the exposures of one request: one row, the features in rank order. Nothing else is
-- written: the bandit job counts exposures into the arms, so concurrent requests never wait on
-- the same arm rows (every request of a segment would update the same few rows otherwise). The
-- shared advisory lock and shown_at stamped after it let the job count exactly (reco.job_bandit):
-- Every live exposure is written here (reco.log_exposures and reco.api_serve call it; only the
-- evaluation copies exposures, into its own scopes).
DROP FUNCTION IF EXISTS reco._log_exposures(int, int, text, text, text[], text);
-- A user not (yet) known (p_user_key NULL) is recorded by id, not created: a read never writes a
-- user; the id's first event or upsert attaches its exposures (reco._attach_exposures).
DROP FUNCTION IF EXISTS reco._log_exposures(int, int, text, text, int[], text);
DROP FUNCTION IF EXISTS reco._log_exposures(int, int, text, text, int[], text, text, int, smallint[]);
CREATE OR REPLACE FUNCTION reco._log_exposures(p_tenant_id int, p_user_key int, p_user_id text, p_segment text,
                                               p_request_id text, p_keys int[], p_variant text,
                                               p_scenario text DEFAULT NULL, p_experiment_id int DEFAULT NULL,
                                               p_sides smallint[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(reco.lock_key('exposures'), p_tenant_id);
    INSERT INTO reco.exposures (tenant_id, request_id, user_key, user_id, feature_keys, segment, variant, shown_at,
                                scenario, experiment_id, sides)
    VALUES (p_tenant_id, p_request_id, p_user_key, CASE WHEN p_user_key IS NULL THEN p_user_id END, p_keys,
            p_segment, p_variant, clock_timestamp(), p_scenario, p_experiment_id, p_sides);
END $$;

-- The exposures recorded under ids that now have a user row (called where users are created)
CREATE OR REPLACE FUNCTION reco._attach_exposures(p_tenant_id int, p_user_ids text[])
RETURNS void
LANGUAGE sql AS $$
    UPDATE reco.exposures x SET user_key = u.user_key, user_id = NULL
    FROM reco.users u
    WHERE x.tenant_id = p_tenant_id AND x.user_key IS NULL AND x.user_id = ANY (p_user_ids)
      AND u.tenant_id = p_tenant_id AND u.user_id = x.user_id
$$;

DROP FUNCTION IF EXISTS reco._user_key(int, text);  -- reads no longer create users

CREATE OR REPLACE FUNCTION reco.log_exposures(p_request_id text, p_user_id text, p_feature_ids text[],
                                              p_variant text DEFAULT NULL, p_tenant text DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _user record;
    _segment text;
    _keys int[];
BEGIN
    IF reco._missing(p_request_id) OR reco._missing(p_user_id) THEN
        RAISE EXCEPTION 'request_id and user_id are required'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the id of the request that showed them.';
    END IF;
    SELECT u.user_key, u.paid, u.attributes INTO _user
    FROM reco.users u WHERE u.tenant_id = _tid AND u.user_id = p_user_id;
    SELECT g.serving_attribute || '=' || g.serving_value INTO _segment
    FROM reco._serving_segments(_tid, coalesce(_user.paid, false), coalesce(_user.attributes, '{}'),
                                reco._segment_attributes(_tid), reco.setting('min_segment_users', _tid)::int) AS g;
    _keys := ARRAY(SELECT f.feature_key
                   FROM unnest(p_feature_ids) WITH ORDINALITY AS x(feature_id, ord)
                   JOIN reco.features f ON f.tenant_id = _tid AND f.feature_id = x.feature_id
                   ORDER BY x.ord);
    IF cardinality(_keys) > 0 THEN
        PERFORM reco._log_exposures(_tid, _user.user_key, p_user_id, _segment, p_request_id, _keys, p_variant);
    END IF;
    RETURN cardinality(_keys);
END $$;
COMMENT ON FUNCTION reco.log_exposures(text, text, text[], text, text) IS
$c$record that features were shown to a user (request id, order = rank, experiment variant, the user's serving
segment); returns how many. A use of the feature within bandit_window marks the exposure used (ingest) and
counts a success in the segment's bandit arm; the bandit job counts the exposures without a use as failures.
Example: SELECT reco.log_exposures('req-1', 'U42', ARRAY['batch-mode', 'upscale']);$c$;

CREATE OR REPLACE VIEW reco.exposure_items AS
SELECT t.slug AS tenant, x.request_id, coalesce(u.user_id, x.user_id) AS user_id, f.feature_id, s.rank::int AS rank,
       x.segment, x.variant, x.shown_at, s.feature_key = ANY (x.used_keys) AS used
FROM reco.exposures x
JOIN reco.tenants t ON t.tenant_id = x.tenant_id
LEFT JOIN reco.users u ON u.tenant_id = x.tenant_id AND u.user_key = x.user_key
CROSS JOIN LATERAL unnest(x.feature_keys) WITH ORDINALITY AS s(feature_key, rank)
JOIN reco.features f ON f.tenant_id = x.tenant_id AND f.feature_key = s.feature_key;
COMMENT ON VIEW reco.exposure_items IS
    'one row per feature shown: tenant, request, user, feature, rank, segment, variant, when, and whether it was used within bandit_window (for A/B analysis)';
