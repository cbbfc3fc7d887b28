-- Job bodies: the refresh functions behind every derived table. Each is a function
-- reco.job_<name>(tenant_id) returning the rows it wrote; reco.run_job (sql/045_job_runner.sql, with the job
-- catalog) wraps it with an advisory lock, a run-log row and commits. The helpers serving shares are in
-- sql/035_model_helpers.sql, the Python-step protocol in sql/038_job_protocol.sql, the defaults of the
-- settings they read in sql/010_tenants_settings.sql.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

-- ---------------------------------------------------------------------------------------
-- feature_stats
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.job_feature_stats(p_tenant_id int)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _names text[] := reco._segment_attributes(p_tenant_id);
    _n bigint;
BEGIN
    PERFORM reco._progress('feature_stats', p_tenant_id, 'segments');
    DELETE FROM reco.segments WHERE tenant_id = p_tenant_id;
    INSERT INTO reco.segments (tenant_id, attribute, value, users)
    SELECT p_tenant_id, s.attribute, s.value, count(*)
    FROM reco.users u
    CROSS JOIN LATERAL reco._user_segments(u.paid, u.attributes, _names) AS s
    WHERE u.tenant_id = p_tenant_id
    GROUP BY s.attribute, s.value;

    PERFORM reco._progress('feature_stats', p_tenant_id, 'popularity and success rates');
    DELETE FROM reco.feature_stats WHERE tenant_id = p_tenant_id;
    INSERT INTO reco.feature_stats (tenant_id, attribute, value, feature_key, users, uses,
                                    successes, failures, popularity, success_rate)
    SELECT p_tenant_id, s.attribute, s.value, i.feature_key, count(*), sum(i.uses),
           sum(i.successes), sum(i.failures),
           count(*)::float8 / max(seg.users),
           (sum(i.successes) + 1.0) / (sum(i.successes) + sum(i.failures) + 2.0)
    FROM reco.interactions i
    JOIN reco.users u ON u.tenant_id = i.tenant_id AND u.user_key = i.user_key
    CROSS JOIN LATERAL reco._user_segments(u.paid, u.attributes, _names) AS s
    JOIN reco.segments seg ON seg.tenant_id = p_tenant_id AND seg.attribute = s.attribute
                          AND seg.value = s.value
    WHERE i.tenant_id = p_tenant_id
    GROUP BY s.attribute, s.value, i.feature_key;
    GET DIAGNOSTICS _n = ROW_COUNT;
    ANALYZE reco.segments;
    ANALYZE reco.feature_stats;
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco.job_feature_stats(int) IS 'job body: rebuild reco.segments and reco.feature_stats for a tenant';

-- ---------------------------------------------------------------------------------------
-- cohort_priors: P(i | a = v) = (users of i in the segment + 1) / (users in the segment + 2)
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.job_cohort_priors(p_tenant_id int)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _n bigint;
BEGIN
    DELETE FROM reco.cohort_priors WHERE tenant_id = p_tenant_id;
    INSERT INTO reco.cohort_priors (tenant_id, attribute, value, feature_key, prob)
    SELECT p_tenant_id, seg.attribute, seg.value, f.feature_key,
           (coalesce(st.users, 0) + 1.0) / (seg.users + 2.0)
    FROM reco.segments seg
    JOIN reco.features f ON f.tenant_id = seg.tenant_id AND f.active
    LEFT JOIN reco.feature_stats st ON st.tenant_id = seg.tenant_id AND st.attribute = seg.attribute
                                   AND st.value = seg.value AND st.feature_key = f.feature_key
    WHERE seg.tenant_id = p_tenant_id AND seg.attribute <> '*';
    GET DIAGNOSTICS _n = ROW_COUNT;
    ANALYZE reco.cohort_priors;
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco.job_cohort_priors(int) IS 'job body: rebuild reco.cohort_priors from reco.feature_stats';

-- ---------------------------------------------------------------------------------------
-- embeddings: content vectors, feature factors, user vectors
-- ---------------------------------------------------------------------------------------

-- A tenant's partition of a table partitioned by tenant (user_vectors, usercf_scores) is rebuilt
-- as a new table beside the old one, then swapped in with a short lock at the end: readers keep
-- the old rows until then, and other tenants' partitions are not touched.
-- _new_partition creates the empty table (<parent>_<tenant>_new, prefixed "_") and returns its name.
CREATE OR REPLACE FUNCTION reco._new_partition(p_parent text, p_tenant_id int)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    _new text := format('_%s_%s_new', p_parent, p_tenant_id);
BEGIN
    IF to_regclass('reco.' || _new) IS NOT NULL THEN  -- normally absent: a failed run rolls back
        EXECUTE format('DROP TABLE reco.%I', _new);
    END IF;
    EXECUTE format('CREATE TABLE reco.%I (LIKE reco.%I INCLUDING DEFAULTS, CONSTRAINT %I CHECK (tenant_id = %s))',
                   _new, p_parent, format('%s_%s_tenant_check', p_parent, p_tenant_id), p_tenant_id);
    RETURN _new;
END $$;

-- _swap_partition analyses the new table, drops the tenant's old partition and attaches the new
-- one under the old name; p_indexes are the suffixes of the new table's indexes to rename.
CREATE OR REPLACE FUNCTION reco._swap_partition(p_parent text, p_tenant_id int, p_indexes text[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    _new text := format('_%s_%s_new', p_parent, p_tenant_id);
    _part text := format('%s_%s', p_parent, p_tenant_id);
    _suffix text;
BEGIN
    -- statistics before the swap: plans made right after it must know the table's size
    EXECUTE format('ANALYZE reco.%I', _new);
    IF to_regclass('reco.' || _part) IS NOT NULL THEN
        EXECUTE format('ALTER TABLE reco.%I DETACH PARTITION reco.%I', p_parent, _part);
        EXECUTE format('DROP TABLE reco.%I', _part);
    END IF;
    EXECUTE format('ALTER TABLE reco.%I RENAME TO %I', _new, _part);
    FOREACH _suffix IN ARRAY p_indexes LOOP
        EXECUTE format('ALTER INDEX reco.%I RENAME TO %I', _new || '_' || _suffix, _part || '_' || _suffix);
    END LOOP;
    EXECUTE format('ALTER TABLE reco.%I ATTACH PARTITION reco.%I FOR VALUES IN (%s)', p_parent, _part, p_tenant_id);
    EXECUTE format('COMMENT ON TABLE reco.%I IS %L', _part, format('reco.%s of tenant %s', p_parent, p_tenant_id));
END $$;

DROP FUNCTION IF EXISTS reco._describe_user_vectors();

CREATE OR REPLACE FUNCTION reco.job_embeddings(p_tenant_id int)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _active int;
    _svd_ok boolean;
    _svd_at timestamptz;
    _new text;
    _n bigint;
BEGIN
    -- 1. (the content embeddings are written by the feature_neighbors job, which reads them)
    -- 2. feature factors: one-hot (exact cosine) when the active catalog fits 64 dims; else the
    --    SVD factors that jobs/svd.py (numpy) wrote just before, in this session (the Python
    --    runner). pg_cron cannot compute them: then the last SVD factors are reused if they cover
    --    the catalog, else a deterministic random projection (approximate cosine) stands in, and
    --    the run is logged 'deferred' with the SVD queued for `reco jobs loop`.
    PERFORM reco._progress('embeddings', p_tenant_id, 'feature factors');
    SELECT count(*) INTO _active FROM reco.features WHERE tenant_id = p_tenant_id AND active;
    SELECT count(*) = _active AND _active > 0, min(ff.computed_at) INTO _svd_ok, _svd_at
    FROM reco.feature_factors ff
    JOIN reco.features f USING (tenant_id, feature_key)
    WHERE ff.tenant_id = p_tenant_id AND ff.method = 'svd' AND f.active;
    IF _active > reco.vector_dims() AND NOT reco._python_step('svd') THEN
        PERFORM reco._defer(p_tenant_id, 'embeddings', CASE WHEN _svd_ok
            THEN format('SVD factors need Python (numpy): queued for `reco jobs loop`; user vectors use the factors of %s',
                        to_char(_svd_at, 'YYYY-MM-DD HH24:MI:SS TZ'))
            WHEN _active <= reco.setting('sql_factors_max_features', p_tenant_id)::int
            THEN 'SVD factors need Python (numpy): queued for `reco jobs loop`; user vectors use factors computed in SQL (subspace iteration, sql/041_sql_factors.sql) until then'
            ELSE 'SVD factors need Python (numpy): queued for `reco jobs loop`; user vectors use a random projection until then' END);
    ELSE  -- computed in full: nothing left queued (an evaluation scope's provenance reads the queue)
        DELETE FROM reco.job_queue WHERE tenant_id = p_tenant_id AND job = 'embeddings';
    END IF;
    IF _active > reco.vector_dims() AND NOT _svd_ok AND _active <= reco.setting('sql_factors_max_features', p_tenant_id)::int THEN
        PERFORM reco._sql_factors(p_tenant_id);
    ELSIF _active <= reco.vector_dims() OR NOT _svd_ok THEN
        DELETE FROM reco.feature_factors WHERE tenant_id = p_tenant_id;
        INSERT INTO reco.feature_factors (tenant_id, feature_key, factor, method)
        SELECT p_tenant_id, f.feature_key,
               CASE WHEN _active <= reco.vector_dims() THEN
                   ARRAY(SELECT CASE WHEN d = f.pos THEN 1 ELSE 0 END::real
                         FROM generate_series(0, reco.vector_dims() - 1) AS d ORDER BY d)::vector
               ELSE
                   ARRAY(SELECT (hashtext(f.feature_key || ':' || d)::float8 / 2147483648.0)::real
                         FROM generate_series(0, reco.vector_dims() - 1) AS d ORDER BY d)::vector
               END,
               CASE WHEN _active <= reco.vector_dims() THEN 'exact' ELSE 'random' END
        FROM (SELECT feature_key, (row_number() OVER (ORDER BY feature_key) - 1)::int AS pos
              FROM reco.features WHERE tenant_id = p_tenant_id AND active) AS f;
    END IF;

    -- 3. user vectors (reco.user_vector_rows), the tenant's partition rebuilt and swapped in
    --    (reco._swap_partition); the HNSW index is built once, not row by row
    PERFORM reco._progress('embeddings', p_tenant_id, 'user vectors');
    _new := reco._new_partition('user_vectors', p_tenant_id);
    EXECUTE format($q$
        INSERT INTO reco.%I (tenant_id, user_key, embedding, feature_keys, strengths)
        SELECT tenant_id, user_key, embedding, feature_keys, strengths
        FROM reco.user_vector_rows WHERE tenant_id = $1$q$, _new) USING p_tenant_id;
    GET DIAGNOSTICS _n = ROW_COUNT;
    EXECUTE format('ALTER TABLE reco.%I ADD CONSTRAINT %I PRIMARY KEY (tenant_id, user_key)', _new, _new || '_pkey');
    PERFORM reco._progress('embeddings', p_tenant_id, 'HNSW index');
    EXECUTE format('CREATE INDEX %I ON reco.%I USING hnsw (embedding vector_cosine_ops) WITH (m = %s)',
                   _new || '_embedding_idx', _new, reco.setting('hnsw_m', p_tenant_id)::int);
    PERFORM reco._swap_partition('user_vectors', p_tenant_id, '{pkey,embedding_idx}');

    -- 4. UserCF of every user with a vector (reco._usercf): one nearest-user search per user and
    --    run instead of one per request; serving searches only for users whose first
    --    interactions came after this run. Rebuilt and swapped in like the vectors.
    PERFORM reco._progress('embeddings', p_tenant_id, 'UserCF (nearest users)');
    PERFORM set_config('hnsw.ef_search', reco.setting('hnsw_ef_search', p_tenant_id) #>> '{}', true);
    _new := reco._new_partition('usercf_scores', p_tenant_id);
    EXECUTE format($q$
        INSERT INTO reco.%I (tenant_id, user_key, feature_keys, scores)
        SELECT $1, u.user_key, c.feature_keys, c.scores
        FROM reco.user_vectors u
        CROSS JOIN LATERAL reco._usercf($1, u.user_key, u.embedding, u.feature_keys, $2) AS c
        WHERE u.tenant_id = $1$q$, _new) USING p_tenant_id, reco.setting('user_neighbors', p_tenant_id)::int;
    EXECUTE format('ALTER TABLE reco.%I ADD CONSTRAINT %I PRIMARY KEY (tenant_id, user_key)', _new, _new || '_pkey');
    PERFORM reco._swap_partition('usercf_scores', p_tenant_id, '{pkey}');
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco.job_embeddings(int) IS
    'job body: feature factors, user vectors and UserCF scores for a tenant';

-- ---------------------------------------------------------------------------------------
-- feature_neighbors: the neighbour model S(j, i) as top-K rows, plus content neighbours
-- ---------------------------------------------------------------------------------------
--
-- Sync contract: a model is named in setting neighbor_model's check (reco._neighbor_models, sql/035_model_helpers.sql), in
-- reco.job_feature_neighbors below, in jobs/ease.py (EASE, numpy) and in jobs/tune.py's search.
--
-- Every model reads R as binary (a user used a feature or not): the time decay and repeat uses
-- weigh a user's own features when serving (ItemCF = Σ strength(u, j)·S(j, i)), but similarities
-- learned from decayed weights lose what older co-usage says (MovieLens-100K: NDCG@10 0.061
-- against 0.071). Rows are kept per TARGET feature i: its K most similar sources j, which is the
-- side RecBole's ItemKNN and EASE keep (each user's score for i sums over i's own K neighbours);
-- keeping each source's K targets instead scored 0.0555 against 0.0689 on the same split. To bound
-- what serving reads per feature of the user, a source keeps at most min(5·K, max(100, 2·K)) rows (its strongest: K 20 → 100, K 100 → 200; on MovieLens-100K EASE K 100 lost nothing at 200 per source and 0.0014 NDCG@10 at 100).

-- The collaborative neighbours of a tenant's features by cosine or RP3beta, from the pairs of
-- features used by the same user (a self-join of the tenant's interactions on the user, one pass:
-- the pairs are aggregated, never stored). cosine: |U(j) ∩ U(i)| / sqrt(|U(j)|·|U(i)|) ·
-- c / (c + shrinkage); RP3beta (Paudel et al. 2017; Dacrema et al. 2019): the two-step random walk
-- j → u → i, Σ_u (1/|U(j)|)^α (1/|I(u)|)^α, divided by |U(i)|^β. Returns (source, target, score)
-- with each target's top p_k sources; targets are the active features.
--
-- The co-usage (the pairs) is counted over each user's strongest neighbor_user_items features (by
-- weight; all of a lighter user's; 0 = the largest cap whose pairs fit neighbor_pairs_max, usually
-- none): the self-join makes Σ_u |I(u)|² / 2 rows, which heavy users dominate (a user with 500
-- features alone makes 125k), so the cap bounds the work whatever the catalog and the histories. The degrees |U(j)|, |I(u)| count every feature (degrees
-- from the capped R scored lower on MovieLens: cosine NDCG@10 0.0657 against 0.0676).
CREATE OR REPLACE FUNCTION reco._sql_neighbors(p_tenant_id int, p_model text, p_k int)
RETURNS TABLE (feature_key int, neighbor_key int, score float8)
LANGUAGE plpgsql
-- the pairs are hashed in memory (self-join rows, j < i: MovieLens-100K 9.9M in full, 2.4M at 100 items
-- per user; long-tail 10k × 20k: 151M in full, 43M at 100, into 22M distinct pairs in full)
SET work_mem = '256MB' AS $$
DECLARE
    _shrink float8 := reco.setting('neighbor_shrinkage', p_tenant_id)::float8;
    _alpha float8 := reco.setting('rp3_alpha', p_tenant_id)::float8;
    _beta float8 := reco.setting('rp3_beta', p_tenant_id)::float8;
    _cap int := nullif(reco.setting('neighbor_user_items', p_tenant_id)::int, 0);
    _pairs float8;
BEGIN
    IF _cap IS NULL THEN
        -- automatic: the largest cap (every feature first) whose pairs fit neighbor_pairs_max
        SELECT c.n, c.pairs INTO _cap, _pairs
        FROM (SELECT cap.n, sum(least(d.n, cap.n)::float8 * (least(d.n, cap.n) - 1) / 2) AS pairs
              FROM (SELECT count(*) AS n FROM reco.interactions
                    WHERE tenant_id = p_tenant_id AND weight > 0 GROUP BY user_key) AS d
              CROSS JOIN unnest('{2147483647,1000,700,500,400,300,250,200,150,120,100,80,60,50,40,30,20}'::int[]) AS cap(n)
              GROUP BY cap.n) AS c
        ORDER BY (c.pairs <= reco.setting('neighbor_pairs_max', p_tenant_id)::float8) DESC, c.n DESC
        LIMIT 1;
    END IF;
    PERFORM set_config('reco.neighbor_pairs', CASE WHEN _cap IS NULL OR _cap = 2147483647 THEN 'every feature of every user'
        ELSE format('each user''s strongest %s features', _cap) END, true);
    _cap := coalesce(_cap, 2147483647);
    -- the binary R of the tenant (each user's strongest _cap features), with the user's weight in
    -- the walk, (1/|I(u)|)^α (computed once per row, not per pair); a temporary table with
    -- statistics, so the self-join is planned as a hash join whatever autovacuum has seen
    DROP TABLE IF EXISTS pg_temp._r;
    CREATE TEMP TABLE _r ON COMMIT DROP AS
    SELECT x.user_key, x.feature_key, power(x.degree::float8, -_alpha) AS walk
    FROM (SELECT i.user_key, i.feature_key, count(*) OVER w AS degree,
                 row_number() OVER (w ORDER BY i.weight DESC, i.feature_key) AS r
          FROM reco.interactions i
          WHERE i.tenant_id = p_tenant_id AND i.weight > 0
          WINDOW w AS (PARTITION BY i.user_key)) AS x
    WHERE x.r <= _cap;
    ANALYZE _r;
    DROP TABLE IF EXISTS pg_temp._deg;
    CREATE TEMP TABLE _deg ON COMMIT DROP AS
    SELECT r.feature_key, count(*)::float8 AS users, coalesce(f.active, false) AS active
    FROM reco.interactions r LEFT JOIN reco.features f ON f.tenant_id = p_tenant_id AND f.feature_key = r.feature_key
    WHERE r.tenant_id = p_tenant_id AND r.weight > 0
    GROUP BY r.feature_key, f.active;
    ANALYZE _deg;
    -- each pair once (j < i), one aggregate: the co-users for cosine, the walk for RP3beta
    DROP TABLE IF EXISTS pg_temp._half;
    IF p_model = 'cosine' THEN
        CREATE TEMP TABLE _half ON COMMIT DROP AS
        SELECT a.feature_key AS j, b.feature_key AS i, count(*)::float8 AS v
        FROM _r a
        JOIN _r b ON b.user_key = a.user_key AND b.feature_key > a.feature_key
        GROUP BY a.feature_key, b.feature_key;
    ELSE
        CREATE TEMP TABLE _half ON COMMIT DROP AS
        SELECT a.feature_key AS j, b.feature_key AS i, sum(a.walk) AS v
        FROM _r a
        JOIN _r b ON b.user_key = a.user_key AND b.feature_key > a.feature_key
        GROUP BY a.feature_key, b.feature_key;
    END IF;
    RETURN QUERY
    SELECT x.j, x.i, x.s
    FROM (
        SELECT p.j, p.i, p.s, row_number() OVER (PARTITION BY p.i ORDER BY p.s DESC, p.j) AS r
        FROM (
            SELECT c.j, c.i,
                   CASE p_model
                       WHEN 'cosine' THEN c.v / sqrt(dj.users * di.users) * c.v / (c.v + _shrink)
                       ELSE c.v * power(dj.users, -_alpha) * power(di.users, -_beta)
                   END AS s
            FROM (-- the value is symmetric in (j, i): each pair is aggregated once (j < i), half
                  -- the rows of the self-join, then read in both directions
                  SELECT h.j, h.i, h.v FROM _half h
                  UNION ALL
                  SELECT h.i, h.j, h.v FROM _half h) AS c
            JOIN _deg dj ON dj.feature_key = c.j
            JOIN _deg di ON di.feature_key = c.i AND di.active
        ) AS p
    ) AS x
    WHERE x.r <= p_k;
END $$;

-- EASE in SQL for small catalogs (Steck 2019; jobs/ease.py is the numpy version): B = −P / diag(P)
-- with P = (RᵀR + λI)⁻¹ over the binary R, diag(B) = 0, each active target's neighbors_k largest
-- positive weights written to reco.neighbor_weights as jobs/ease.py writes them. The inverse is a
-- Gauss-Jordan elimination in place (RᵀR + λI is symmetric positive definite: no pivoting), n³ steps
-- in plpgsql: only up to reco._ease_sql_max() features (64: under a second), so that the evaluation
-- scopes of a small catalog (reco.evaluate, reco.tune, pg_cron's evaluate and tune jobs) measure EASE
-- without numpy. The tenant's own feature_neighbors job keeps numpy's (deferred under pg_cron).
CREATE OR REPLACE FUNCTION reco._ease_sql_max()
RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 64
$$;
COMMENT ON FUNCTION reco._ease_sql_max() IS
    'internal: the largest catalog (features with interactions) whose EASE weights SQL computes (reco._sql_ease_weights)';

CREATE OR REPLACE FUNCTION reco._ease_in_sql(p_tenant_id int)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT count(DISTINCT i.feature_key) <= reco._ease_sql_max()
    FROM reco.interactions i WHERE i.tenant_id = p_tenant_id AND i.weight > 0
$$;
COMMENT ON FUNCTION reco._ease_in_sql(int) IS
    'internal: whether the tenant''s EASE weights are computed in SQL (at most reco._ease_sql_max() features with interactions)';

CREATE OR REPLACE FUNCTION reco._sql_ease_weights(p_tenant_id int)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _lambda float8 := reco.setting('ease_lambda', p_tenant_id)::float8;
    _k int := reco.setting('neighbors_k', p_tenant_id)::int;
    _keys int[];
    _n int;
    _m float8[];
    _p float8;
    _f float8;
    _n_rows bigint;
BEGIN
    _keys := ARRAY(SELECT DISTINCT i.feature_key FROM reco.interactions i
                   WHERE i.tenant_id = p_tenant_id AND i.weight > 0 ORDER BY 1);
    _n := cardinality(_keys);
    DELETE FROM reco.neighbor_weights WHERE tenant_id = p_tenant_id;
    IF _n < 2 THEN
        RETURN 0;
    END IF;
    IF _n > reco._ease_sql_max() THEN
        RAISE EXCEPTION 'EASE over % features is computed by numpy, not SQL', _n
            USING ERRCODE = 'feature_not_supported', HINT = 'Run the feature_neighbors job from `reco jobs run` or `reco jobs loop`.';
    END IF;
    -- RᵀR + λI, row-major (index (a − 1)·n + b, a and b the positions of the keys)
    _m := array_fill(0::float8, ARRAY[_n * _n]);
    FOR _p, _f IN  -- (cell, co-users)
        SELECT ((array_position(_keys, a.feature_key) - 1) * _n + array_position(_keys, b.feature_key))::float8,
               count(*)::float8
        FROM reco.interactions a
        JOIN reco.interactions b ON b.tenant_id = a.tenant_id AND b.user_key = a.user_key AND b.weight > 0
        WHERE a.tenant_id = p_tenant_id AND a.weight > 0
        GROUP BY a.feature_key, b.feature_key
    LOOP
        _m[_p::int] := _f;
    END LOOP;
    FOR _a IN 1.._n LOOP
        _m[(_a - 1) * _n + _a] := _m[(_a - 1) * _n + _a] + _lambda;
    END LOOP;
    -- the inverse, in place
    FOR _c IN 1.._n LOOP
        _p := _m[(_c - 1) * _n + _c];
        _m[(_c - 1) * _n + _c] := 1;
        FOR _j IN 1.._n LOOP
            _m[(_c - 1) * _n + _j] := _m[(_c - 1) * _n + _j] / _p;
        END LOOP;
        FOR _i IN 1.._n LOOP
            CONTINUE WHEN _i = _c;
            _f := _m[(_i - 1) * _n + _c];
            CONTINUE WHEN _f = 0;
            _m[(_i - 1) * _n + _c] := 0;
            FOR _j IN 1.._n LOOP
                _m[(_i - 1) * _n + _j] := _m[(_i - 1) * _n + _j] - _f * _m[(_c - 1) * _n + _j];
            END LOOP;
        END LOOP;
    END LOOP;
    -- B(j, i) = −P(j, i) / P(i, i), j ≠ i; each active target i keeps its K largest positive weights
    INSERT INTO reco.neighbor_weights (tenant_id, feature_key, neighbor_key, score)
    SELECT p_tenant_id, w.source, w.target, w.score
    FROM (SELECT _keys[j] AS source, _keys[i] AS target, -_m[(j - 1) * _n + i] / _m[(i - 1) * _n + i] AS score,
                 row_number() OVER (PARTITION BY i ORDER BY -_m[(j - 1) * _n + i] / _m[(i - 1) * _n + i] DESC, j) AS r
          FROM generate_series(1, _n) AS i CROSS JOIN generate_series(1, _n) AS j
          WHERE i <> j) AS w
    JOIN reco.features f ON f.tenant_id = p_tenant_id AND f.feature_key = w.target AND f.active
    WHERE w.r <= least(_k, _n - 1) AND w.score > 0;
    GET DIAGNOSTICS _n_rows = ROW_COUNT;
    RETURN _n_rows;
END $$;
COMMENT ON FUNCTION reco._sql_ease_weights(int) IS
$c$internal: EASE weights of a small catalog (at most reco._ease_sql_max() features) computed in SQL into
reco.neighbor_weights, as jobs/ease.py does with numpy for any size$c$;

CREATE OR REPLACE FUNCTION reco.job_feature_neighbors(p_tenant_id int)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _model text := reco.setting('neighbor_model', p_tenant_id) #>> '{}';
    _k int := reco.setting('neighbors_k', p_tenant_id)::int;
    _min_users int := reco.setting('min_feature_users', p_tenant_id)::int;
    _n bigint;
    _content bigint;
    _scale float8;
BEGIN
    IF _model <> ALL (reco._neighbor_models()) THEN
        RAISE EXCEPTION 'unknown neighbour model "%"', _model
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Set neighbor_model to one of ' || array_to_string(reco._neighbor_models(), ', ') || '.';
    END IF;
    IF _model = 'ease' AND NOT reco._python_step('ease') AND reco._ease_in_sql(p_tenant_id)
       AND (SELECT evaluation_of FROM reco.tenants WHERE tenant_id = p_tenant_id) IS NOT NULL THEN
        -- an evaluation scope of a small catalog: the inverse in SQL (the same weights as numpy), so
        -- reco.evaluate and reco.tune measure what the tenant serves; the tenant's own refresh stays numpy's
        PERFORM reco._sql_ease_weights(p_tenant_id);
    ELSIF _model = 'ease' AND NOT reco._python_step('ease') THEN
        -- EASE is a matrix inverse (numpy): pg_cron cannot compute it. Nothing is rebuilt; the
        -- rows in reco.feature_neighbors stay those of the last run, and the run says so.
        PERFORM reco._defer(p_tenant_id, 'feature_neighbors', format(
            'neighbor_model ease needs Python (numpy): queued for `reco jobs loop`; the neighbours in use are from %s',
            coalesce((SELECT to_char(max(finished_at), 'YYYY-MM-DD HH24:MI:SS TZ') FROM reco.job_runs
                      WHERE job = 'feature_neighbors' AND status = 'succeeded'
                        AND tenant = (SELECT slug FROM reco.tenants WHERE tenant_id = p_tenant_id)),
                     'no earlier run')));
        RETURN 0;
    END IF;
    -- computed in full: nothing left queued (an evaluation scope's provenance reads the queue)
    DELETE FROM reco.job_queue WHERE tenant_id = p_tenant_id AND job = 'feature_neighbors';

    PERFORM reco._progress('feature_neighbors', p_tenant_id, _model || ' top-K');
    DELETE FROM reco.feature_neighbors WHERE tenant_id = p_tenant_id;
    INSERT INTO reco.feature_neighbors (tenant_id, feature_key, neighbor_key, score, source, rank)
    SELECT p_tenant_id, x.feature_key, x.neighbor_key, x.score, 'cf', x.r
    FROM (
        SELECT w.feature_key, w.neighbor_key, w.score,
               row_number() OVER (PARTITION BY w.feature_key ORDER BY w.score DESC, w.neighbor_key) AS r
        FROM (
            SELECT s.feature_key, s.neighbor_key, s.score
            FROM reco._sql_neighbors(p_tenant_id, _model, _k) AS s
            WHERE _model <> 'ease'
            UNION ALL
            -- EASE: the top-K per target that jobs/ease.py computed just before, in this session
            SELECT nw.feature_key, nw.neighbor_key, nw.score
            FROM reco.neighbor_weights nw
            WHERE _model = 'ease' AND nw.tenant_id = p_tenant_id
        ) AS w
        WHERE w.score > 0
    ) AS x
    WHERE x.r <= least(5 * _k, greatest(100, 2 * _k));
    GET DIAGNOSTICS _n = ROW_COUNT;
    DELETE FROM reco.neighbor_weights WHERE tenant_id = p_tenant_id;
    -- read below (the content neighbours count and exclude each feature's rows): planned without
    -- statistics for the rows just written (a new tenant's, e.g. an evaluation scope's), that query
    -- took minutes on MovieLens-100K's second tune fold instead of seconds
    ANALYZE reco.feature_neighbors;

    -- content embeddings: the client's vector if given, else category, tags, paid flag, description
    PERFORM reco._progress('feature_neighbors', p_tenant_id, 'content embeddings');
    DELETE FROM reco.feature_embeddings WHERE tenant_id = p_tenant_id;
    INSERT INTO reco.feature_embeddings (tenant_id, feature_key, content, source)
    SELECT p_tenant_id, e.feature_key, e.content, e.source FROM reco._content_embeddings(p_tenant_id) AS e;
    ANALYZE reco.feature_embeddings;

    -- features used by fewer than min_feature_users users: content neighbours (nearest content
    -- embeddings, an HNSW k-NN per such feature) fill their list up to K. Their score is the
    -- content similarity on the model's scale: times the lower quartile of the model's own scores
    -- (cosines, random-walk probabilities and EASE weights differ by orders of magnitude), so
    -- content evidence ranks below most collaborative evidence instead of outweighing it.
    PERFORM reco._progress('feature_neighbors', p_tenant_id, 'content neighbours');
    PERFORM set_config('hnsw.ef_search', greatest(40, 2 * _k)::text, true);
    SELECT coalesce(percentile_cont(0.25) WITHIN GROUP (ORDER BY n.score), 1) INTO _scale
    FROM reco.feature_neighbors n WHERE n.tenant_id = p_tenant_id AND n.source = 'cf';
    INSERT INTO reco.feature_neighbors (tenant_id, feature_key, neighbor_key, score, source, rank)
    SELECT p_tenant_id, c.feature_key, nb.feature_key, nb.score * _scale, 'content', (c.have + nb.r)::smallint
    FROM (
        SELECT e.feature_key, e.content, coalesce(h.have, 0) AS have
        FROM reco.feature_embeddings e
        LEFT JOIN (SELECT i.feature_key, count(*) AS users FROM reco.interactions i
                   WHERE i.tenant_id = p_tenant_id AND i.weight > 0 GROUP BY i.feature_key) AS u
               ON u.feature_key = e.feature_key
        LEFT JOIN (SELECT n.feature_key, count(*) AS have FROM reco.feature_neighbors n
                   WHERE n.tenant_id = p_tenant_id GROUP BY n.feature_key) AS h ON h.feature_key = e.feature_key
        WHERE e.tenant_id = p_tenant_id AND coalesce(u.users, 0) < _min_users AND coalesce(h.have, 0) < _k
    ) AS c
    CROSS JOIN LATERAL (
        SELECT k.feature_key, k.score, row_number() OVER (ORDER BY k.d, k.feature_key) AS r
        FROM (SELECT o.feature_key, 1 - (o.content <=> c.content) AS score, o.content <=> c.content AS d
              FROM reco.feature_embeddings o
              JOIN reco.features f ON f.tenant_id = p_tenant_id AND f.feature_key = o.feature_key AND f.active
              WHERE o.tenant_id = p_tenant_id AND o.feature_key <> c.feature_key
                AND NOT EXISTS (SELECT 1 FROM reco.feature_neighbors n WHERE n.tenant_id = p_tenant_id
                                AND n.feature_key = c.feature_key AND n.neighbor_key = o.feature_key)
              ORDER BY o.content <=> c.content
              LIMIT _k) AS k
    ) AS nb
    WHERE c.have + nb.r <= _k;
    GET DIAGNOSTICS _content = ROW_COUNT;
    ANALYZE reco.feature_neighbors;
    PERFORM set_config('reco.job_message', format('model %s, K %s: %s rows, %s content rows; co-usage of %s', _model,
                                                  _k, _n, _content,
                                                  coalesce(nullif(current_setting('reco.neighbor_pairs', true), ''),
                                                           'every feature (EASE)')), true);
    RETURN _n + _content;
END $$;
COMMENT ON FUNCTION reco.job_feature_neighbors(int) IS
$c$job body: rebuild reco.feature_neighbors for a tenant with the model of setting neighbor_model (cosine, rp3beta:
SQL; ease: computed by jobs/ease.py in the Python runner, deferred to `reco jobs loop` when pg_cron runs it), each
active feature's neighbors_k most similar features, plus content neighbours for little-used features$c$;

-- ---------------------------------------------------------------------------------------
-- bandit: Beta counters from exposures and the uses that followed them
-- ---------------------------------------------------------------------------------------

-- Beta(α, β) per segment and feature: α - 1 = the exposures followed by a use, β - 1 = the
-- others counted so far: those shown before reco.bandit_state.counted_before.
--
-- How the counts stay exact while requests, events and the job run at once:
-- * exposures are written by reco._log_exposures only: it takes advisory lock (reco.lock_key('exposures'), tenant)
--   shared, then stamps shown_at with clock_timestamp(); the lock is held until commit. The
--   job takes it exclusively for an instant and reads the clock: every exposure shown before
--   that time is committed, every later one will be stamped later. Nothing is missed or counted
--   twice, whatever the commit order.
-- * ingest marks uses as events arrive: a use of a counted exposure moves one from β to α, of a
--   not yet counted one adds to α (the job then counts it as used, so not in β). Ingest holds
--   advisory lock (reco.lock_key('ingest'), tenant) shared while it does, the job exclusively while it counts.

-- The whole count, from scratch (the first run of the job, and the evaluation's scopes).
DROP FUNCTION IF EXISTS reco._bandit_arms_from_exposures(int);
CREATE OR REPLACE FUNCTION reco._bandit_arms_from_exposures(p_tenant_id int,
                                                            p_before timestamptz DEFAULT 'infinity')
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _n bigint;
BEGIN
    DELETE FROM reco.bandit_arms WHERE tenant_id = p_tenant_id;
    INSERT INTO reco.bandit_arms (tenant_id, segment, feature_key, alpha, beta)
    SELECT p_tenant_id, x.segment, s.feature_key,
           1 + count(*) FILTER (WHERE s.feature_key = ANY (x.used_keys)),
           1 + count(*) FILTER (WHERE s.feature_key <> ALL (x.used_keys) AND x.shown_at < p_before)
    FROM reco.exposures x
    CROSS JOIN LATERAL unnest(x.feature_keys) AS s(feature_key)
    WHERE x.tenant_id = p_tenant_id
    GROUP BY x.segment, s.feature_key;
    GET DIAGNOSTICS _n = ROW_COUNT;
    ANALYZE reco.bandit_arms;
    RETURN _n;
END $$;

-- Counts the exposures shown since the last run as failures, unless already used (their uses
-- were counted by ingest). The first run counts them all.
CREATE OR REPLACE FUNCTION reco.job_bandit(p_tenant_id int)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _from timestamptz;
    _to timestamptz;
    _n bigint;
BEGIN
    PERFORM pg_advisory_lock(reco.lock_key('exposures'), p_tenant_id);  -- waits for the exposure writers in flight
    _to := clock_timestamp();
    PERFORM pg_advisory_unlock(reco.lock_key('exposures'), p_tenant_id);
    PERFORM pg_advisory_xact_lock(reco.lock_key('ingest'), p_tenant_id);
    SELECT counted_before INTO _from FROM reco.bandit_state WHERE tenant_id = p_tenant_id;
    IF _from IS NULL THEN
        _n := reco._bandit_arms_from_exposures(p_tenant_id, _to);
    ELSE
        INSERT INTO reco.bandit_arms AS b (tenant_id, segment, feature_key, alpha, beta)
        SELECT p_tenant_id, x.segment, s.feature_key, 1, 1 + count(*)
        FROM reco.exposures x
        CROSS JOIN LATERAL unnest(x.feature_keys) AS s(feature_key)
        WHERE x.tenant_id = p_tenant_id AND x.shown_at >= _from AND x.shown_at < _to
          AND s.feature_key <> ALL (x.used_keys)
        GROUP BY x.segment, s.feature_key
        ORDER BY 2, 3
        ON CONFLICT ON CONSTRAINT bandit_arms_pkey DO UPDATE
            SET beta = b.beta + (excluded.beta - 1), updated_at = now();
        GET DIAGNOSTICS _n = ROW_COUNT;
    END IF;
    INSERT INTO reco.bandit_state AS st (tenant_id, counted_before) VALUES (p_tenant_id, _to)
    ON CONFLICT ON CONSTRAINT bandit_state_pkey DO UPDATE SET counted_before = excluded.counted_before;
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco.job_bandit(int) IS
    'job body: count the exposures shown since the last run into reco.bandit_arms (the first run counts them all); returns the arms touched';

-- Takes exposures out of the counts before they are deleted (erasure of a user, retention):
-- the arms stay what a count of the remaining exposures gives.
-- p_user_key NULL: every user's (retention), unless p_user_id names an id never known as a user.
-- The uses were counted at ingest whether or not the job ever ran; the failures only by the job.
DROP FUNCTION IF EXISTS reco._bandit_forget(int, int, timestamptz);
CREATE OR REPLACE FUNCTION reco._bandit_forget(p_tenant_id int, p_user_key int, p_before timestamptz,
                                               p_user_id text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(reco.lock_key('ingest'), p_tenant_id);
    UPDATE reco.bandit_arms b
    SET alpha = greatest(1, b.alpha - g.used), beta = greatest(1, b.beta - g.failed), updated_at = now()
    FROM (SELECT x.segment, s.feature_key,
                 count(*) FILTER (WHERE s.feature_key = ANY (x.used_keys)) AS used,
                 count(*) FILTER (WHERE s.feature_key <> ALL (x.used_keys)
                                    AND x.shown_at < coalesce(st.counted_before, '-infinity')) AS failed
          FROM reco.exposures x
          CROSS JOIN LATERAL unnest(x.feature_keys) AS s(feature_key)
          LEFT JOIN reco.bandit_state st ON st.tenant_id = p_tenant_id
          WHERE x.tenant_id = p_tenant_id
            AND (p_user_key IS NULL OR x.user_key = p_user_key)
            AND (p_user_id IS NULL OR (x.user_key IS NULL AND x.user_id = p_user_id))
            AND (p_before IS NULL OR x.shown_at < p_before)
          GROUP BY x.segment, s.feature_key) AS g
    WHERE b.tenant_id = p_tenant_id AND b.segment = g.segment AND b.feature_key = g.feature_key;
END $$;

-- ---------------------------------------------------------------------------------------
-- maintenance: rebase the decay epoch, create the coming months' partitions
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.rebase_epoch(p_tenant_id int, p_new_epoch timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _old timestamptz;
    _tau float8 := (reco.setting('decay_tau_days', p_tenant_id))::float8 * 86400;
    _n bigint;
BEGIN
    -- waits for running ingests (ROW EXCLUSIVE) and holds new ones until commit
    LOCK TABLE reco.interactions IN SHARE ROW EXCLUSIVE MODE;
    SELECT decay_epoch INTO _old FROM reco.tenants WHERE tenant_id = p_tenant_id FOR UPDATE;
    IF _old IS NULL OR _old = p_new_epoch THEN
        RETURN 0;
    END IF;
    UPDATE reco.interactions
    SET weight = greatest(weight * exp(greatest(-700.0, least(700.0,
                     -extract(epoch FROM p_new_epoch - _old)::float8 / _tau))), 1e-300)
    WHERE tenant_id = p_tenant_id;
    GET DIAGNOSTICS _n = ROW_COUNT;
    UPDATE reco.tenants SET decay_epoch = p_new_epoch WHERE tenant_id = p_tenant_id;
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco.rebase_epoch(int, timestamptz) IS
    'move a tenant''s decay epoch t0, rescaling every interaction weight so that nothing changes but the scale';

CREATE OR REPLACE FUNCTION reco.job_maintenance(p_tenant_id int)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _tau float8 := (reco.setting('decay_tau_days', p_tenant_id))::float8 * 86400;
    _limit float8 := reco.setting('rebase_after', p_tenant_id)::float8;
    _expired timestamptz := now() - (reco.setting('exposure_retention', p_tenant_id) ->> 0)::interval;
    _t0 timestamptz;
    _latest timestamptz;
    _rows bigint;
    _n bigint := 0;
BEGIN
    _n := reco.ensure_event_partitions(now(), now() + interval '2 months');
    PERFORM reco._bandit_forget(p_tenant_id, NULL, _expired);
    DELETE FROM reco.exposures WHERE tenant_id = p_tenant_id AND shown_at < _expired;
    GET DIAGNOSTICS _rows = ROW_COUNT;
    _n := _n + _rows;
    DELETE FROM reco.user_daily_uses WHERE tenant_id = p_tenant_id AND day < current_date - 400;
    GET DIAGNOSTICS _rows = ROW_COUNT;
    _n := _n + _rows;
    SELECT decay_epoch INTO _t0 FROM reco.tenants WHERE tenant_id = p_tenant_id;
    SELECT max(last_at) INTO _latest FROM reco.interactions WHERE tenant_id = p_tenant_id;
    IF _t0 IS NOT NULL AND _latest IS NOT NULL
       AND abs(extract(epoch FROM _latest - _t0)::float8 / _tau) > _limit THEN
        _n := _n + reco.rebase_epoch(p_tenant_id, date_trunc('day', _latest));
    END IF;
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco.job_maintenance(int) IS
    'job body: create event partitions for the next two months; rebase the decay epoch when due';
