-- Statistics for the design and checks of an experiment: sample-ratio mismatch, sample size, and
-- multiple comparisons.
-- Conventions, and the list of every statistics function: sql/073_stats_distributions.sql.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

-- ---------------------------------------------------------------------------------------
-- Sample-ratio mismatch, sample size, multiple comparisons
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.stat_srm(
    p_observed bigint[], p_weights float8[] DEFAULT NULL, p_threshold float8 DEFAULT 0.001,
    OUT chi2 float8, OUT df int, OUT p_value float8, OUT mismatch boolean)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    k int := coalesce(cardinality(p_observed), 0);
    total float8;
    wsum float8;
    w float8[];
BEGIN
    PERFORM reco._stat_check(k >= 2, 'stat_srm needs the users of at least two arms',
                             'e.g. reco.stat_srm(ARRAY[1000, 1200], ARRAY[0.5, 0.5])');
    PERFORM reco._stat_check(array_position(p_observed, NULL) IS NULL AND 0 <= ALL (p_observed),
                             'observed counts must be >= 0', 'Pass the number of users assigned to each arm.');
    w := coalesce(p_weights, array_fill(1::float8, ARRAY[k]));
    PERFORM reco._stat_check(cardinality(w) = k,
                             format('%s observed counts but %s weights', k, cardinality(w)),
                             'Pass one expected weight per arm, in the same order.');
    PERFORM reco._stat_check(array_position(w, NULL) IS NULL AND 0 < ALL (w) AND 'Infinity' > ALL (w),
                             'expected weights must be positive', 'e.g. ARRAY[0.5, 0.5]; they need not sum to 1.');
    PERFORM reco._stat_check_alpha(p_threshold, 'threshold');
    df := k - 1;
    SELECT sum(o), sum(e) INTO total, wsum FROM unnest(p_observed, w) AS u(o, e);
    IF total = 0 THEN
        chi2 := 0;
        p_value := 1;
    ELSE
        SELECT sum((o - e / wsum * total) ^ 2 / (e / wsum * total)) INTO chi2 FROM unnest(p_observed, w) AS u(o, e);
        p_value := reco.stat_chi2_sf(chi2, df);
    END IF;
    mismatch := p_value < p_threshold;
END $$;
COMMENT ON FUNCTION reco.stat_srm(bigint[], float8[], float8) IS
$c$sample-ratio mismatch check: Pearson's χ² goodness-of-fit of the users observed per arm
(p_observed) against the expected split (p_weights, any positive scale; default equal).
Outputs: chi2, df = arms − 1, p_value, mismatch = p_value < p_threshold (default 0.001: the
assignment is broken and the experiment's results should not be trusted).
Example: SELECT * FROM reco.stat_srm(ARRAY[1000, 1200], ARRAY[0.5, 0.5]) -- p = 0.0000201$c$;

CREATE OR REPLACE FUNCTION reco.stat_sample_size_arms(
    p_baseline float8, p_mde float8, p_relative boolean DEFAULT false, p_alpha float8 DEFAULT 0.05,
    p_power float8 DEFAULT 0.8, p_ratio float8 DEFAULT 1,
    OUT n_a bigint, OUT n_b bigint, OUT total bigint, OUT rate_a float8, OUT rate_b float8)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    za float8;
    zb float8;
    pbar float8;
    delta float8;
    n float8;
BEGIN
    PERFORM reco._stat_check(p_baseline > 0 AND p_baseline < 1,
                             format('the baseline rate must be between 0 and 1, got %s', p_baseline),
                             'e.g. 0.05 for a 5 % conversion rate.');
    PERFORM reco._stat_check_alpha(p_alpha);
    PERFORM reco._stat_check_alpha(p_power, 'power');
    PERFORM reco._stat_check(p_ratio > 0 AND p_ratio < 'Infinity', format('the arm ratio must be positive, got %s', p_ratio),
                             'p_ratio = users in B / users in A; 1 for an even split.');
    PERFORM reco._stat_check(p_relative IS NOT NULL, 'p_relative must be true or false', 'true: p_mde is a relative lift.');
    rate_a := p_baseline;
    rate_b := CASE WHEN p_relative THEN p_baseline * (1 + p_mde) ELSE p_baseline + p_mde END;
    PERFORM reco._stat_check(rate_b > 0 AND rate_b < 1 AND rate_b <> rate_a,
                             format('the detectable rate must be between 0 and 1 and differ from the baseline, got %s', rate_b),
                             'p_mde is the absolute difference (0.02: 5 % → 7 %), or relative with p_relative (0.4: 5 % → 7 %).');
    za := -reco.stat_norm_ppf(p_alpha / 2);
    zb := reco.stat_norm_ppf(p_power);
    delta := rate_b - rate_a;
    pbar := (rate_a + p_ratio * rate_b) / (1 + p_ratio);
    n := (za * sqrt(pbar * (1 - pbar) * (1 + 1 / p_ratio))
          + zb * sqrt(rate_a * (1 - rate_a) + rate_b * (1 - rate_b) / p_ratio)) ^ 2 / delta ^ 2;
    n_a := ceil(n - 1e-9);
    n_b := ceil(n * p_ratio - 1e-9);
    total := n_a + n_b;
END $$;
COMMENT ON FUNCTION reco.stat_sample_size_arms(float8, float8, boolean, float8, float8, float8) IS
$c$users needed per arm to detect a change of a conversion rate with a two-sided two-proportion
z-test (pooled variance under H0): n_A = [z_{1−α/2} √(p̄q̄ (1 + 1/r)) + z_{power} √(p_A q_A + p_B q_B / r)]² / (p_B − p_A)²,
n_B = r n_A, p̄ = (p_A + r p_B)/(1 + r). Inputs: baseline rate p_A, MDE (absolute difference, or
relative lift when p_relative), α (default 0.05), power (default 0.8), arm ratio r = n_B / n_A
(default 1). Outputs: n_a, n_b, total, rate_a, rate_b. Example: SELECT * FROM
reco.stat_sample_size_arms(0.05, 0.02) -- 2213 per arm$c$;

CREATE OR REPLACE FUNCTION reco.stat_sample_size(
    p_baseline float8, p_mde float8, p_relative boolean DEFAULT false, p_alpha float8 DEFAULT 0.05,
    p_power float8 DEFAULT 0.8, p_ratio float8 DEFAULT 1)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT s.n_a FROM reco.stat_sample_size_arms(p_baseline, p_mde, p_relative, p_alpha, p_power, p_ratio) s
$$;
COMMENT ON FUNCTION reco.stat_sample_size(float8, float8, boolean, float8, float8, float8) IS
$c$users per arm (arm A's when p_ratio ≠ 1; see stat_sample_size_arms for both arms) to detect a
change of a conversion rate: baseline rate, MDE (absolute, or relative when p_relative), α (default
0.05, two-sided), power (default 0.8), arm ratio n_B / n_A (default 1); pooled-variance formula.
Examples: SELECT reco.stat_sample_size(0.05, 0.02) -- 2213; SELECT reco.stat_sample_size(0.05, 0.4,
true, 0.05, 0.9) -- 2962 (5 % → 7 % is a relative lift of 0.4)$c$;



CREATE OR REPLACE FUNCTION reco.stat_p_adjust(p_p float8[], p_method text DEFAULT 'holm')
RETURNS float8[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    m int;
    method text := lower(coalesce(p_method, ''));
    result float8[];
BEGIN
    PERFORM reco._stat_check(method IN ('holm', 'bh', 'bonferroni'), format('unknown adjustment "%s"', p_method),
                             'Use holm (family-wise error), bh (Benjamini–Hochberg false discovery rate) or bonferroni.');
    IF p_p IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM reco._stat_check(true = ALL (SELECT x >= 0 AND x <= 1 FROM unnest(p_p) x WHERE x IS NOT NULL),
                             'p values must be between 0 and 1', 'NULL elements are allowed and left out.');
    SELECT count(x) INTO m FROM unnest(p_p) x;
    IF method = 'bonferroni' THEN
        SELECT array_agg(CASE WHEN x IS NOT NULL THEN least(1, x * m) END ORDER BY i) INTO result
        FROM unnest(p_p) WITH ORDINALITY u(x, i);
    ELSIF method = 'holm' THEN
        -- step-down: sorted ascending, adj(j) = max over k ≤ j of (m − k + 1) p(k)
        SELECT array_agg(a ORDER BY i) INTO result FROM (
            SELECT i, least(1, max((m - r + 1) * x) OVER (ORDER BY r)) AS a
            FROM (SELECT i, x, row_number() OVER (ORDER BY x, i) AS r
                  FROM unnest(p_p) WITH ORDINALITY u(x, i) WHERE x IS NOT NULL) s
            UNION ALL
            SELECT i, NULL FROM unnest(p_p) WITH ORDINALITY u(x, i) WHERE x IS NULL
        ) t;
    ELSE
        -- step-up: sorted ascending, adj(j) = min over k ≥ j of m p(k) / k
        SELECT array_agg(a ORDER BY i) INTO result FROM (
            SELECT i, least(1, min(m * x / r) OVER (ORDER BY r DESC)) AS a
            FROM (SELECT i, x, row_number() OVER (ORDER BY x, i) AS r
                  FROM unnest(p_p) WITH ORDINALITY u(x, i) WHERE x IS NOT NULL) s
            UNION ALL
            SELECT i, NULL FROM unnest(p_p) WITH ORDINALITY u(x, i) WHERE x IS NULL
        ) t;
    END IF;
    RETURN result;
END $$;
COMMENT ON FUNCTION reco.stat_p_adjust(float8[], text) IS
$c$p values adjusted for multiple comparisons, in the input order (NULL elements stay NULL and are
not counted): 'holm' (Holm's step-down, controls the family-wise error rate; default), 'bh'
(Benjamini–Hochberg step-up, controls the false discovery rate) or 'bonferroni'; as R's p.adjust.
Example: SELECT reco.stat_p_adjust('{.01,.04,.03,.005,.55,.6}') -- {0.05,0.12,0.12,0.03,1,1}$c$;
