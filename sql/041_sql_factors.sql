-- Feature factors in SQL, for the user vectors of a catalog above 64 features when Python is not
-- there (pg_cron without `reco jobs loop`): the top-64 right-singular subspace of R found by
-- subspace iteration (Halko, Martinsson & Tropp 2011, the range finder jobs/svd.py runs in numpy),
-- with R and Rᵀ applied by pgvector sums over the interactions and each iterate orthonormalised by
-- Cholesky-QR (the 64 × 64 Gram matrix in SQL, its Cholesky factor in plpgsql). A user's cosine to
-- another depends only on the subspace, not on the basis (any orthonormal basis of it gives the
-- same cosines as the singular vectors), so no final SVD of the small matrix is needed.
-- Cost: per iteration two passes over the interactions and two of (features × 64 × 64) products;
-- MovieLens-100K (1,682 features, 98k interactions): see docs/sql-only-operation.md.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

-- Cholesky-QR's triangular factor: L⁻¹ (lower triangular, 64 × 64, row-major) of the Cholesky
-- factor L of a Gram matrix G = L·Lᵀ. Directions with no weight left (rank below 64) get 0.
CREATE OR REPLACE FUNCTION reco._cholesky_inverse(p_gram float8[], p_n int)
RETURNS float8[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    _l float8[] := array_fill(0::float8, ARRAY[p_n * p_n]);
    _inv float8[] := array_fill(0::float8, ARRAY[p_n * p_n]);
    _trace float8 := 0;
    _s float8;
BEGIN
    FOR i IN 1 .. p_n LOOP
        _trace := _trace + p_gram[(i - 1) * p_n + i];
    END LOOP;
    FOR j IN 1 .. p_n LOOP
        _s := p_gram[(j - 1) * p_n + j];
        FOR k IN 1 .. j - 1 LOOP
            _s := _s - _l[(j - 1) * p_n + k] ^ 2;
        END LOOP;
        IF _s <= 1e-10 * _trace THEN
            CONTINUE;  -- a dependent direction: L[j][j] = 0, dropped
        END IF;
        _l[(j - 1) * p_n + j] := sqrt(_s);
        FOR i IN j + 1 .. p_n LOOP
            _s := p_gram[(i - 1) * p_n + j];
            FOR k IN 1 .. j - 1 LOOP
                _s := _s - _l[(i - 1) * p_n + k] * _l[(j - 1) * p_n + k];
            END LOOP;
            _l[(i - 1) * p_n + j] := _s / _l[(j - 1) * p_n + j];
        END LOOP;
    END LOOP;
    -- forward substitution, column by column: L · L⁻¹ = I
    FOR c IN 1 .. p_n LOOP
        CONTINUE WHEN _l[(c - 1) * p_n + c] = 0;
        _inv[(c - 1) * p_n + c] := 1 / _l[(c - 1) * p_n + c];
        FOR i IN c + 1 .. p_n LOOP
            CONTINUE WHEN _l[(i - 1) * p_n + i] = 0;
            _s := 0;
            FOR k IN c .. i - 1 LOOP
                _s := _s + _l[(i - 1) * p_n + k] * _inv[(k - 1) * p_n + c];
            END LOOP;
            _inv[(i - 1) * p_n + c] := -_s / _l[(i - 1) * p_n + i];
        END LOOP;
    END LOOP;
    RETURN _inv;
END $$;

-- pg_temp._sf (feature_key, v): the current iterate Z, one 64-dim row per active feature, replaced
-- by an orthonormal basis of its column space: Q = Z · (L⁻¹)ᵀ with ZᵀZ = L·Lᵀ. Both products are
-- sums of pgvector rows scaled element by element (one vector operation per feature and dimension).
CREATE OR REPLACE FUNCTION reco._orthonormalise_factors()
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    _inv float8[];
BEGIN
    -- the Gram matrix ZᵀZ, row a = Σ_i Z[i][a] · Z[i]
    _inv := reco._cholesky_inverse(
        (SELECT array_agg(x ORDER BY g.a, e.b)
         FROM (SELECT d.a, sum(f.v * array_fill((f.v::real[])[d.a], ARRAY[reco.vector_dims()])::vector) AS row
               FROM pg_temp._sf f CROSS JOIN generate_series(1, reco.vector_dims()) AS d(a)
               GROUP BY d.a) AS g
         CROSS JOIN LATERAL unnest(g.row::real[]) WITH ORDINALITY AS e(x, b)), reco.vector_dims());
    -- Q[i] = Σ_a Z[i][a] · (column a of L⁻¹)
    UPDATE pg_temp._sf f
    SET v = (SELECT sum(c.col * array_fill((f.v::real[])[c.a], ARRAY[reco.vector_dims()])::vector)
             FROM (SELECT a.i AS a, ARRAY(SELECT _inv[(b.i - 1) * reco.vector_dims() + a.i]::real
                                          FROM generate_series(1, reco.vector_dims()) AS b(i) ORDER BY b.i)::vector AS col
                   FROM generate_series(1, reco.vector_dims()) AS a(i)) AS c);
END $$;

CREATE OR REPLACE FUNCTION reco._sql_factors(p_tenant_id int, p_iterations int DEFAULT 3)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _n bigint;
BEGIN
    -- R over the active features, and the start: the deterministic random projection
    DROP TABLE IF EXISTS pg_temp._sr;
    CREATE TEMP TABLE _sr AS
        SELECT s.user_key, s.feature_key, s.strength::real AS s
        FROM reco.interaction_strengths s
        JOIN reco.features f ON f.tenant_id = s.tenant_id AND f.feature_key = s.feature_key AND f.active
        WHERE s.tenant_id = p_tenant_id AND s.strength > 0;
    DROP TABLE IF EXISTS pg_temp._sf;
    CREATE TEMP TABLE _sf AS
        SELECT f.feature_key,
               ARRAY(SELECT (hashtext(f.feature_key || ':' || d)::float8 / 2147483648.0)::real
                     FROM generate_series(0, reco.vector_dims() - 1) AS d ORDER BY d)::vector AS v
        FROM reco.features f WHERE f.tenant_id = p_tenant_id AND f.active;
    ANALYZE pg_temp._sr;
    FOR _it IN 1 .. p_iterations LOOP
        PERFORM reco._progress('embeddings', p_tenant_id, format('feature factors in SQL: iteration %s of %s',
                                                               _it, p_iterations));
        -- Z ← Rᵀ (R Z), then orthonormalised
        DROP TABLE IF EXISTS pg_temp._sy;
        CREATE TEMP TABLE _sy AS
            SELECT r.user_key, sum(f.v * array_fill(r.s, ARRAY[reco.vector_dims()])::vector) AS v
            FROM pg_temp._sr r JOIN pg_temp._sf f ON f.feature_key = r.feature_key
            GROUP BY r.user_key;
        UPDATE pg_temp._sf f SET v = coalesce(z.v, array_fill(0::real, ARRAY[reco.vector_dims()])::vector)
        FROM pg_temp._sf f0
        LEFT JOIN (SELECT r.feature_key, sum(y.v * array_fill(r.s, ARRAY[reco.vector_dims()])::vector) AS v
                   FROM pg_temp._sr r JOIN pg_temp._sy y ON y.user_key = r.user_key
                   GROUP BY r.feature_key) AS z ON z.feature_key = f0.feature_key
        WHERE f.feature_key = f0.feature_key;
        PERFORM reco._orthonormalise_factors();
    END LOOP;
    DELETE FROM reco.feature_factors WHERE tenant_id = p_tenant_id;
    INSERT INTO reco.feature_factors (tenant_id, feature_key, factor, method)
    SELECT p_tenant_id, f.feature_key, f.v, 'sql' FROM pg_temp._sf f;
    GET DIAGNOSTICS _n = ROW_COUNT;
    DROP TABLE pg_temp._sr, pg_temp._sf, pg_temp._sy;
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco._sql_factors(int, int) IS
    'internal (embeddings job, without Python): feature factors spanning the top-64 right-singular subspace of R by subspace iteration in SQL (method ''sql''); returns the rows written';
