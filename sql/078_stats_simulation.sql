-- Statistics: seeded A/A and A/B experiments drawn and analysed in SQL (reco.stat_simulate), to check the
-- tests' error rates.
-- Conventions, and the list of every statistics function: sql/073_stats_distributions.sql.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

-- ---------------------------------------------------------------------------------------
-- Simulation
-- ---------------------------------------------------------------------------------------

-- one simulated analysis: the test the simulator uses for the metric (z of the two-proportion
-- test, or Welch's t)
CREATE OR REPLACE FUNCTION reco._stat_sim_test(p_conversion boolean, p_alpha float8,
                                               p_n_a bigint, p_sy_a float8, p_syy_a float8,
                                               p_n_b bigint, p_sy_b float8, p_syy_b float8,
                                               OUT stat float8, OUT p_value float8, OUT rel_lift float8)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    r record;
BEGIN
    IF p_conversion THEN
        SELECT pt.z, pt.p_value, pt.rel_lift INTO r
        FROM reco.stat_proportion_test(p_n_a, p_sy_a::bigint, p_n_b, p_sy_b::bigint, p_alpha) pt;
    ELSE
        SELECT mt.t AS z, mt.p_value, mt.rel_lift INTO r
        FROM reco.stat_mean_test(p_n_a, p_sy_a, p_syy_a, p_n_b, p_sy_b, p_syy_b, p_alpha) mt;
    END IF;
    stat := r.z;
    p_value := r.p_value;
    rel_lift := r.rel_lift;
END $$;
COMMENT ON FUNCTION reco._stat_sim_test(boolean, float8, bigint, float8, float8, bigint, float8, float8) IS
    'internal: the test stat_simulate applies at each look (proportion z-test or Welch t-test)';

CREATE OR REPLACE FUNCTION reco.stat_simulate(
    p_experiments int, p_users_per_arm int, p_baseline float8, p_effect float8 DEFAULT 0,
    p_looks int DEFAULT 1, p_seed float8 DEFAULT 0, p_metric text DEFAULT 'conversion',
    p_alpha float8 DEFAULT 0.05, p_sd float8 DEFAULT NULL, p_correlation float8 DEFAULT 0.7)
RETURNS TABLE (experiment int, n_a bigint, n_b bigint, mean_a float8, mean_b float8, rel_lift float8,
               p_value float8, significant boolean,
               sequential_stop_look int, sequential_significant boolean,
               naive_significant boolean, naive_first_look int,
               cuped_variance_reduction float8, cuped_p_value float8, cuped_significant boolean)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE AS $$
#variable_conflict use_column
DECLARE
    conversion boolean := p_metric = 'conversion';
    sd float8 := coalesce(p_sd, p_baseline);
    rho float8 := p_correlation;
    bounds float8[];
    users bigint := p_users_per_arm;
BEGIN
    PERFORM reco._stat_check(p_metric IN ('conversion', 'continuous'), format('unknown metric "%s"', p_metric),
                             'conversion (Bernoulli per user) or continuous (normal, with a correlated pre-period value).');
    PERFORM reco._stat_check(p_experiments BETWEEN 1 AND 1000000, format('experiments must be between 1 and 1000000, got %s', p_experiments),
                             'e.g. 1000 simulated experiments.');
    PERFORM reco._stat_check(p_users_per_arm >= 2, format('users per arm must be at least 2, got %s', p_users_per_arm),
                             'e.g. reco.stat_sample_size(0.05, 0.02).');
    PERFORM reco._stat_check(p_looks BETWEEN 1 AND least(100, p_users_per_arm),
                             format('looks must be between 1 and min(100, users per arm), got %s', p_looks),
                             'The number of equally spaced analyses, the final one included.');
    PERFORM reco._stat_check(p_seed BETWEEN -1 AND 1, format('the seed must be between -1 and 1, got %s', p_seed),
                             'It is passed to setseed().');
    PERFORM reco._stat_check_alpha(p_alpha);
    IF conversion THEN
        PERFORM reco._stat_check(p_baseline > 0 AND p_baseline < 1 AND p_baseline * (1 + p_effect) BETWEEN 0 AND 1,
                                 format('conversion rates must be in [0, 1], got %s and %s', p_baseline, p_baseline * (1 + p_effect)),
                                 'p_baseline is arm A''s rate; arm B''s is p_baseline × (1 + p_effect).');
    ELSE
        PERFORM reco._stat_check(sd > 0 AND rho > -1 AND rho < 1 AND p_baseline IS NOT NULL AND p_effect IS NOT NULL,
                                 format('need a standard deviation > 0 and a correlation in (-1, 1), got %s and %s', sd, rho),
                                 'p_sd defaults to p_baseline (the mean of arm A).');
    END IF;
    bounds := ARRAY(SELECT b.z_boundary FROM reco.stat_sequential_boundaries(p_looks, p_alpha) b ORDER BY b.look);
    PERFORM setseed(p_seed);
    RETURN QUERY
    WITH per_look AS (
        -- per user: a draw; users are split into p_looks equal consecutive batches
        SELECT d.e, d.arm, d.look, count(*) AS n, sum(d.y) AS sy, sum(d.y * d.y) AS syy,
               sum(d.x) AS sx, sum(d.x * d.x) AS sxx, sum(d.x * d.y) AS sxy
        FROM (
            SELECT s.e, s.arm, s.look,
                   CASE WHEN conversion
                        THEN (s.r1 < p_baseline * (1 + p_effect * s.arm))::int::float8
                        ELSE p_baseline * (1 + p_effect * s.arm)
                             + sd * sqrt(-2 * ln(1 - s.r1)) * (rho * cos(2 * pi() * s.r2) + sqrt(1 - rho * rho) * sin(2 * pi() * s.r2))
                   END AS y,
                   CASE WHEN conversion THEN 0::float8
                        ELSE p_baseline + sd * sqrt(-2 * ln(1 - s.r1)) * cos(2 * pi() * s.r2)
                   END AS x
            FROM (
                SELECT (g / (2 * users))::int + 1 AS e,
                       ((g / users) % 2)::int AS arm,
                       ((g % users) * p_looks / users)::int + 1 AS look,
                       random() AS r1,
                       CASE WHEN conversion THEN 0 ELSE random() END AS r2
                FROM generate_series(0::bigint, 2 * users * p_experiments - 1) AS g
                OFFSET 0
            ) s
        ) d
        GROUP BY d.e, d.arm, d.look
    ), cum AS (
        SELECT pl.e, pl.arm, pl.look,
               sum(pl.n) OVER w AS n, sum(pl.sy) OVER w AS sy, sum(pl.syy) OVER w AS syy,
               sum(pl.sx) OVER w AS sx, sum(pl.sxx) OVER w AS sxx, sum(pl.sxy) OVER w AS sxy
        FROM per_look pl
        WINDOW w AS (PARTITION BY pl.e, pl.arm ORDER BY pl.look)
    ), looks AS (
        SELECT a.e, a.look, a.n::bigint AS n_a, b.n::bigint AS n_b,
               a.sy AS sy_a, b.sy AS sy_b, a.syy AS syy_a, b.syy AS syy_b,
               a.sx AS sx_a, b.sx AS sx_b, a.sxx AS sxx_a, b.sxx AS sxx_b, a.sxy AS sxy_a, b.sxy AS sxy_b,
               r.stat, r.p_value, r.rel_lift
        FROM cum a
        JOIN cum b ON b.e = a.e AND b.look = a.look AND b.arm = 1
        CROSS JOIN LATERAL reco._stat_sim_test(conversion, p_alpha, a.n::bigint, a.sy, a.syy, b.n::bigint, b.sy, b.syy) r
        WHERE a.arm = 0
    ), per_experiment AS (
        SELECT l.e,
               min(l.look) FILTER (WHERE abs(l.stat) >= bounds[l.look]) AS stop_look,
               min(l.look) FILTER (WHERE l.p_value < p_alpha) AS naive_look
        FROM looks l
        GROUP BY l.e
    )
    SELECT f.e, f.n_a, f.n_b, f.sy_a / f.n_a, f.sy_b / f.n_b, f.rel_lift,
           f.p_value, coalesce(f.p_value < p_alpha, false),
           pe.stop_look, pe.stop_look IS NOT NULL,
           pe.naive_look IS NOT NULL, pe.naive_look,
           cu.variance_reduction, cu.p_value, CASE WHEN NOT conversion THEN coalesce(cu.p_value < p_alpha, false) END
    FROM looks f
    JOIN per_experiment pe ON pe.e = f.e
    LEFT JOIN LATERAL reco.stat_cuped_test(f.n_a, f.sy_a, f.syy_a, f.sx_a, f.sxx_a, f.sxy_a,
                                           f.n_b, f.sy_b, f.syy_b, f.sx_b, f.sxx_b, f.sxy_b, p_alpha) cu ON NOT conversion
    WHERE f.look = p_looks
    ORDER BY f.e;
END $$;
COMMENT ON FUNCTION reco.stat_simulate(int, int, float8, float8, int, float8, text, float8, float8, float8) IS
$c$simulated experiments drawn and analysed in SQL, to check the statistics (false-positive rate
of A/A tests, power, the cost of peeking, CUPED). Inputs: number of experiments, users per arm,
the baseline (metric conversion: arm A's rate; continuous: arm A's mean), the relative effect of B
(0 = A/A), looks (equally spaced analyses), the seed (in [−1, 1], passed to setseed, which also
sets the session's random() sequence; the same seed gives the same rows), the metric ('conversion': Bernoulli per user, two-proportion z-test; 'continuous':
normal per user with sd p_sd (default the baseline) and a pre-period covariate of correlation
p_correlation (default 0.7), Welch t-test and CUPED), α. Per-user outcomes are drawn with random()
and aggregated into sufficient statistics per look by set-based SQL, then analysed by the stat_*
functions. One row per experiment: experiment, n_a, n_b, mean_a, mean_b, rel_lift, p_value and
significant at the final look; sequential_stop_look / sequential_significant (first look whose |z|
— Welch's t for the continuous metric — reaches the O'Brien–Fleming-type boundary of
stat_sequential_boundaries); naive_significant /
naive_first_look (p < α at any look: peeking); cuped_variance_reduction, cuped_p_value,
cuped_significant (continuous only). Example: SELECT avg(significant::int) FROM
reco.stat_simulate(1000, 1000, 0.1, 0, 5, 0.42) -- the A/A false-positive rate$c$;
