-- Model helpers that serving (sql/050_serving.sql) and the job bodies (sql/040_job_bodies.sql) share: the
-- strength of an interaction and a user's vector row, a user's segments, content embeddings, UserCF of one
-- user, and the names of the neighbour models. A change here changes what is served and what the jobs build.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

-- ---------------------------------------------------------------------------------------
-- Interactions and user vectors
-- ---------------------------------------------------------------------------------------

-- sqrt of a weight relative to the user's largest weight: in (0, 1], free of the decay scale
CREATE OR REPLACE VIEW reco.interaction_strengths AS
SELECT tenant_id, user_key, feature_key,
       sqrt(weight / nullif(max(weight) OVER (PARTITION BY tenant_id, user_key), 0)) AS strength
FROM reco.interactions;
COMMENT ON VIEW reco.interaction_strengths IS
    'R as the models read it: sqrt(weight / the user''s largest weight), in (0, 1]';

-- A user's vector and row of R, computed from the interactions: normalise(Σ strength · factor)
-- and the features with their strengths. The embeddings job stores these in reco.user_vectors;
-- serving computes one for a user who had no interactions at the last job.
CREATE OR REPLACE VIEW reco.user_vector_rows AS
SELECT s.tenant_id, s.user_key,
       l2_normalize(sum(ff.factor * array_fill(s.strength::real, ARRAY[reco.vector_dims()])::vector)) AS embedding,
       array_agg(s.feature_key ORDER BY s.feature_key) AS feature_keys,
       array_agg(s.strength::real ORDER BY s.feature_key) AS strengths
FROM reco.interaction_strengths s
JOIN reco.feature_factors ff ON ff.tenant_id = s.tenant_id AND ff.feature_key = s.feature_key
WHERE s.strength > 0
GROUP BY s.tenant_id, s.user_key;
COMMENT ON VIEW reco.user_vector_rows IS
    'a user''s vector (normalised Σ strength · feature factor) and row of R, from the current interactions: what the embeddings job stores in reco.user_vectors';

-- ---------------------------------------------------------------------------------------
-- Segments
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._segment_attributes(p_tenant_id int)
RETURNS text[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT ARRAY(SELECT jsonb_array_elements_text(reco.setting('segment_attributes', p_tenant_id)))
$$;

-- the (attribute, value) pairs of one user: ('*', '*') first (ord 0), then one per segment
-- attribute the user has, in the order of p_names (inlined by the planner: keep it one SELECT)
DROP FUNCTION IF EXISTS reco._user_segments(boolean, jsonb, text[]) CASCADE;
CREATE FUNCTION reco._user_segments(p_paid boolean, p_attributes jsonb, p_names text[])
RETURNS TABLE (attribute text, value text, ord bigint)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '*', '*', 0
    UNION ALL
    SELECT n.a, CASE WHEN n.a = 'paid' THEN p_paid::text ELSE p_attributes ->> n.a END, n.o
    FROM unnest(p_names) WITH ORDINALITY AS n(a, o)
    WHERE (CASE WHEN n.a = 'paid' THEN p_paid::text ELSE p_attributes ->> n.a END) IS NOT NULL
$$;

-- The segments of one user for serving: every (attribute, value) the user has (the cohort
-- prior multiplies over them) and the first of them, in the order of setting
-- segment_attributes, whose segment has p_min_users users (popularity and bandit arms are
-- read there), else ('*', '*'). Used by recommend_features and log_exposures alike.
CREATE OR REPLACE FUNCTION reco._serving_segments(p_tenant_id int, p_paid boolean, p_attributes jsonb,
                                                  p_names text[], p_min_users int)
RETURNS TABLE (attributes text[], vals text[], serving_attribute text, serving_value text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(s.attribute ORDER BY s.ord), '{}'),
           coalesce(array_agg(s.value ORDER BY s.ord), '{}'),
           coalesce((array_agg(s.attribute ORDER BY s.ord) FILTER (WHERE g.users >= p_min_users))[1], '*'),
           coalesce((array_agg(s.value ORDER BY s.ord) FILTER (WHERE g.users >= p_min_users))[1], '*')
    FROM reco._user_segments(p_paid, p_attributes, p_names) AS s
    LEFT JOIN reco.segments g ON g.tenant_id = p_tenant_id AND g.attribute = s.attribute AND g.value = s.value
    WHERE s.attribute <> '*'
$$;

-- ---------------------------------------------------------------------------------------
-- Content embeddings (reco.vector_dims() dimensions)
-- ---------------------------------------------------------------------------------------

-- A vector_dims()-dim vector from weighted tokens by the hashing trick (sign from a second hash).
CREATE OR REPLACE FUNCTION reco._hash_embedding(p_tokens text[], p_weights float8[])
RETURNS vector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT l2_normalize(ARRAY(
        SELECT coalesce(sum(CASE WHEN hashtext(t || '#') % 2 = 0 THEN w ELSE -w END), 0)::real
        FROM generate_series(0, reco.vector_dims() - 1) AS d
        LEFT JOIN unnest(p_tokens, p_weights) AS x(t, w) ON abs(hashtext(t)) % reco.vector_dims() = d
        GROUP BY d ORDER BY d)::vector)
$$;

-- A client vector of any length folded into vector_dims() dims and normalised.
CREATE OR REPLACE FUNCTION reco._fold_embedding(p real[])
RETURNS vector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT l2_normalize(ARRAY(
        SELECT coalesce(sum(x), 0)::real
        FROM generate_series(0, reco.vector_dims() - 1) AS d
        LEFT JOIN unnest(p) WITH ORDINALITY AS t(x, i) ON (t.i - 1) % reco.vector_dims() = d
        GROUP BY d ORDER BY d)::vector)
$$;

-- The content embedding of a feature: its client vector (folded) when given, else the hashing
-- trick over category (3.0), tags (1.5), paid flag (0.5) and words of description and name (0.5).
CREATE OR REPLACE FUNCTION reco._content_embedding(p_category text, p_tags text[], p_requires_paid boolean,
                                                   p_text text, p_client real[])
RETURNS vector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_client IS NOT NULL THEN reco._fold_embedding(p_client)
                ELSE reco._hash_embedding(t.tokens, t.weights) END
    FROM (
        SELECT array_agg(tok) AS tokens, array_agg(w) AS weights FROM (
            SELECT 'category:' || lower(p_category) AS tok, 3.0::float8 AS w
            UNION ALL SELECT 'paid:' || p_requires_paid::text, 0.5
            UNION ALL SELECT 'tag:' || lower(tag), 1.5 FROM unnest(p_tags) AS tag
            UNION ALL SELECT 'word:' || word, 0.5
            FROM regexp_split_to_table(lower(coalesce(p_text, '')), '[^a-z0-9]+') AS word
            WHERE length(word) >= 3
        ) AS x
    ) AS t
$$;

-- The content embedding of every feature of a tenant, and whether it is the client's vector.
CREATE OR REPLACE FUNCTION reco._content_embeddings(p_tenant_id int)
RETURNS TABLE (feature_key int, content vector, source text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT f.feature_key,
           reco._content_embedding(f.category, f.tags, f.requires_paid,
                                   coalesce(f.description, '') || ' ' || f.name, f.embedding),
           CASE WHEN f.embedding IS NOT NULL THEN 'client' ELSE 'content' END
    FROM reco.features f
    WHERE f.tenant_id = p_tenant_id
$$;

-- ---------------------------------------------------------------------------------------
-- UserCF of one user
-- ---------------------------------------------------------------------------------------

-- UserCF of one user: Σ sim(u, v)·R(v, i) over the p_neighbors nearest users (HNSW on the
-- tenant's user vectors, hnsw.ef_search candidates) who used something the user has not: a
-- neighbour whose features are all the user's own suggests nothing (with a small catalog the
-- very nearest are mostly such). The neighbours' rows of R are stored with their vectors.
-- One row: the 100 best features the user has not used and their scores (a heavy user's
-- neighbours use well over a thousand: the rest would only cost serving time; on MovieLens-100K
-- 100 served the same NDCG@10 as 200, 50 lost 0.0005, and each entry is a row in every call's
-- candidate joins). Used by the
-- embeddings job for every user, and by serving for users whose first interactions came after the job.
CREATE OR REPLACE FUNCTION reco._usercf(p_tenant_id int, p_user_key int, p_query vector, p_features int[],
                                        p_neighbors int)
RETURNS TABLE (feature_keys int[], scores real[])
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(t.fk ORDER BY t.fk), '{}'), coalesce(array_agg(t.s ORDER BY t.fk), '{}')
    FROM (SELECT x.fk, sum(nb.sim * x.strength)::real AS s
          FROM (SELECT uv.feature_keys, uv.strengths, 1 - uv.distance AS sim
                FROM (SELECT v.feature_keys, v.strengths, v.embedding <=> p_query AS distance
                      FROM reco.user_vectors v
                      WHERE v.tenant_id = p_tenant_id AND v.user_key <> p_user_key
                      ORDER BY v.embedding <=> p_query
                      LIMIT 2 * p_neighbors) AS uv
                WHERE NOT uv.feature_keys <@ p_features
                ORDER BY uv.distance
                LIMIT p_neighbors) AS nb
          CROSS JOIN LATERAL unnest(nb.feature_keys, nb.strengths) AS x(fk, strength)
          WHERE nb.sim > 0 AND x.fk <> ALL (p_features)
          GROUP BY x.fk
          ORDER BY 2 DESC, 1
          LIMIT 100) AS t
$$;

-- ---------------------------------------------------------------------------------------
-- The neighbour models (setting neighbor_model; built by reco.job_feature_neighbors)
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._neighbor_models()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{cosine,rp3beta,ease}'::text[]
$$;
COMMENT ON FUNCTION reco._neighbor_models() IS
    'internal: the neighbour models setting neighbor_model accepts (cosine and rp3beta in SQL, ease in Python)';
