-- Statistics: frequentist tests of two arms (proportions, means by sums or moments, ratio metrics by
-- the delta method, CUPED) and intervals of one proportion (Wilson) that stay in range at low counts.
-- Conventions, and the list of every statistics function: sql/073_stats_distributions.sql.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

-- ---------------------------------------------------------------------------------------
-- Frequentist tests
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._stat_check_count(p_n bigint, p_x bigint, p_arm text)
RETURNS void
LANGUAGE plpgsql PARALLEL SAFE AS $$
BEGIN
    IF p_n IS NULL OR p_x IS NULL OR p_n < 0 OR p_x < 0 OR p_x > p_n THEN
        RAISE EXCEPTION 'arm %: need 0 <= conversions <= users, got % of %', p_arm,
            coalesce(p_x::text, 'NULL'), coalesce(p_n::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the number of users (n) and of users who converted (x) in each arm.';
    END IF;
END $$;
COMMENT ON FUNCTION reco._stat_check_count(bigint, bigint, text) IS
    'internal: raise invalid_parameter_value unless 0 <= x <= n';

CREATE OR REPLACE FUNCTION reco.stat_proportion_test(
    p_n_a bigint, p_x_a bigint, p_n_b bigint, p_x_b bigint, p_alpha float8 DEFAULT 0.05,
    OUT rate_a float8, OUT rate_b float8,
    OUT lift float8, OUT lift_ci_low float8, OUT lift_ci_high float8,
    OUT rel_lift float8, OUT rel_ci_low float8, OUT rel_ci_high float8,
    OUT z float8, OUT p_value float8, OUT rel_p_value float8)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    zc float8;
    va float8;
    vb float8;
    se float8;
    pooled float8;
    se0 float8;
    se_rel float8;
BEGIN
    PERFORM reco._stat_check_count(p_n_a, p_x_a, 'A');
    PERFORM reco._stat_check_count(p_n_b, p_x_b, 'B');
    PERFORM reco._stat_check_alpha(p_alpha);
    rate_a := p_x_a::float8 / nullif(p_n_a, 0);
    rate_b := p_x_b::float8 / nullif(p_n_b, 0);
    IF p_n_a = 0 OR p_n_b = 0 THEN
        RETURN;
    END IF;
    zc := -reco.stat_norm_ppf(p_alpha / 2);
    va := rate_a * (1 - rate_a);
    vb := rate_b * (1 - rate_b);
    lift := rate_b - rate_a;
    se := sqrt(va / p_n_a + vb / p_n_b);
    lift_ci_low := lift - zc * se;
    lift_ci_high := lift + zc * se;
    pooled := (p_x_a + p_x_b)::float8 / (p_n_a + p_n_b);
    se0 := sqrt(pooled * (1 - pooled) * (1.0 / p_n_a + 1.0 / p_n_b));
    IF se0 > 0 THEN
        z := lift / se0;
        p_value := 2 * reco.stat_norm_cdf(-abs(z));
    END IF;
    IF rate_a > 0 THEN
        rel_lift := lift / rate_a;
        se_rel := sqrt(vb / p_n_b + va / p_n_a * (rate_b / rate_a) ^ 2) / rate_a;
        rel_ci_low := rel_lift - zc * se_rel;
        rel_ci_high := rel_lift + zc * se_rel;
        IF se_rel > 0 THEN
            rel_p_value := 2 * reco.stat_norm_cdf(-abs(rel_lift / se_rel));
        END IF;
    END IF;
END $$;
COMMENT ON FUNCTION reco.stat_proportion_test(bigint, bigint, bigint, bigint, float8) IS
$c$two-proportion z-test of arm B against arm A. Inputs: users n and converted users x per arm
(0 ≤ x ≤ n), α (default 0.05). Outputs: rate_a, rate_b; lift = rate_b − rate_a with its Wald
(unpooled) 1−α confidence interval; rel_lift = lift / rate_a with a delta-method interval
(var = v_b/(p_a² n_b) + v_a p_b²/(p_a⁴ n_a), as gbstats) and its p value rel_p_value; z and the
two-sided p_value of the classic pooled-variance z-test. NULL where undefined (empty arm, no
variance, rate_a = 0). Example: SELECT * FROM reco.stat_proportion_test(1000, 50, 1000, 70);$c$;

-- variance (n − 1 denominator) from sums, refusing sums no data set can have
CREATE OR REPLACE FUNCTION reco._stat_variance(p_n bigint, p_sum float8, p_sumsq float8, p_what text)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    ss float8;
BEGIN
    IF p_n IS NULL OR p_sum IS NULL OR p_sumsq IS NULL OR p_n < 0 OR p_sumsq < 0 THEN
        PERFORM reco._stat_check(false, format('%s: need n >= 0 and a sum of squares >= 0, got n = %s, sum of squares = %s',
                                               p_what, coalesce(p_n::text, 'NULL'), coalesce(p_sumsq::text, 'NULL')),
                                 'Pass n, Σx and Σx² of the per-user values.');
    END IF;
    IF p_n < 2 THEN
        RETURN NULL;
    END IF;
    ss := p_sumsq - p_sum * p_sum / p_n;
    IF ss < -1e-9 * p_sumsq THEN
        PERFORM reco._stat_check(false, format('%s: Σx² = %s is smaller than (Σx)²/n = %s', p_what, p_sumsq, p_sum * p_sum / p_n),
                                 'No data set has these sums: check that Σx² is the sum of the squared values.');
    END IF;
    RETURN greatest(ss, 0) / (p_n - 1);
END $$;
COMMENT ON FUNCTION reco._stat_variance(bigint, float8, float8, text) IS
    'internal: sample variance (n − 1) from n, Σx, Σx²; NULL below 2 values; raises on impossible sums';

CREATE OR REPLACE FUNCTION reco.stat_mean_test_moments(
    p_n_a bigint, p_mean_a float8, p_var_a float8, p_n_b bigint, p_mean_b float8, p_var_b float8,
    p_alpha float8 DEFAULT 0.05,
    OUT mean_a float8, OUT mean_b float8,
    OUT lift float8, OUT lift_ci_low float8, OUT lift_ci_high float8,
    OUT se float8, OUT df float8, OUT t float8, OUT p_value float8,
    OUT rel_lift float8, OUT rel_ci_low float8, OUT rel_ci_high float8, OUT rel_p_value float8)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    sa float8;   -- var_a / n_a
    sb float8;
    tc float8;
    se_rel float8;
    t_rel float8;
BEGIN
    PERFORM reco._stat_check(p_n_a >= 0 AND p_n_b >= 0, format('need n >= 0 in both arms, got %s and %s', p_n_a, p_n_b),
                             'n is the number of units (users) in the arm.');
    PERFORM reco._stat_check(p_n_a < 2 OR p_n_b < 2 OR (p_var_a >= 0 AND p_var_b >= 0),
                             format('need variances >= 0, got %s and %s', p_var_a, p_var_b),
                             'Pass the per-unit sample variance (n − 1 denominator), not a standard error.');
    PERFORM reco._stat_check_alpha(p_alpha);
    mean_a := p_mean_a;
    mean_b := p_mean_b;
    lift := p_mean_b - p_mean_a;
    IF p_n_a < 2 OR p_n_b < 2 THEN
        RETURN;
    END IF;
    sa := p_var_a / p_n_a;
    sb := p_var_b / p_n_b;
    IF sa + sb = 0 THEN
        RETURN;
    END IF;
    se := sqrt(sa + sb);
    -- Welch–Satterthwaite
    df := (sa + sb) ^ 2 / (sa ^ 2 / (p_n_a - 1) + sb ^ 2 / (p_n_b - 1));
    tc := reco.stat_t_ppf(1 - p_alpha / 2, df);
    lift_ci_low := lift - tc * se;
    lift_ci_high := lift + tc * se;
    t := lift / se;
    p_value := reco._stat_t_2sided(t, df);
    -- relative lift, delta method (gbstats): same Welch df
    IF p_mean_a <> 0 THEN
        rel_lift := lift / p_mean_a;
        se_rel := sqrt(p_var_b / p_n_b + p_var_a / p_n_a * (p_mean_b / p_mean_a) ^ 2) / abs(p_mean_a);
        rel_ci_low := rel_lift - tc * se_rel;
        rel_ci_high := rel_lift + tc * se_rel;
        IF se_rel > 0 THEN
            t_rel := rel_lift / se_rel;
            rel_p_value := reco._stat_t_2sided(t_rel, df);
        END IF;
    END IF;
END $$;
COMMENT ON FUNCTION reco.stat_mean_test_moments(bigint, float8, float8, bigint, float8, float8, float8) IS
$c$Welch's unequal-variance t-test of arm B against arm A from per-arm n, mean and per-unit
sample variance (n − 1), e.g. the output of stat_ratio_moments or CUPED-adjusted values.
Outputs: mean_a, mean_b; lift = mean_b − mean_a, its 1−α confidence interval, se, the
Welch–Satterthwaite df, t and the two-sided p_value (Student's t); rel_lift = lift / mean_a with
the delta-method variance v_b/(m_a² n_b) + v_a m_b²/(m_a⁴ n_a), its interval and rel_p_value,
on the same df (as GrowthBook's gbstats). NULL where undefined (n < 2, no variance, mean_a = 0).$c$;

CREATE OR REPLACE FUNCTION reco.stat_mean_test(
    p_n_a bigint, p_sum_a float8, p_sumsq_a float8, p_n_b bigint, p_sum_b float8, p_sumsq_b float8,
    p_alpha float8 DEFAULT 0.05,
    OUT mean_a float8, OUT mean_b float8,
    OUT lift float8, OUT lift_ci_low float8, OUT lift_ci_high float8,
    OUT se float8, OUT df float8, OUT t float8, OUT p_value float8,
    OUT rel_lift float8, OUT rel_ci_low float8, OUT rel_ci_high float8, OUT rel_p_value float8)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT m.* FROM reco.stat_mean_test_moments(
        p_n_a, p_sum_a / nullif(p_n_a, 0), reco._stat_variance(p_n_a, p_sum_a, p_sumsq_a, 'arm A'),
        p_n_b, p_sum_b / nullif(p_n_b, 0), reco._stat_variance(p_n_b, p_sum_b, p_sumsq_b, 'arm B'),
        p_alpha) AS m
$$;
COMMENT ON FUNCTION reco.stat_mean_test(bigint, float8, float8, bigint, float8, float8, float8) IS
$c$Welch's t-test of a per-user mean metric from sufficient statistics: per arm n, Σx and Σx²
(x = the per-user value), α (default 0.05). Same outputs as stat_mean_test_moments: mean_a,
mean_b, lift with its 1−α CI, se, Welch df, t, two-sided p_value (Student's t), rel_lift with its
delta-method CI and rel_p_value. Example (gbstats' vector): SELECT * FROM
reco.stat_mean_test(3407, 1396.87, 52377.9767, 3461, 2422.7, 134698.29) -- lift 0.29, p 0.02016$c$;

CREATE OR REPLACE FUNCTION reco.stat_ratio_moments(
    p_n bigint, p_sum_num float8, p_sumsq_num float8, p_sum_den float8, p_sumsq_den float8, p_sum_numden float8,
    OUT mean float8, OUT variance float8,
    OUT mean_num float8, OUT mean_den float8, OUT var_num float8, OUT var_den float8, OUT covariance float8)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    var_num := reco._stat_variance(p_n, p_sum_num, p_sumsq_num, 'numerator');
    var_den := reco._stat_variance(p_n, p_sum_den, p_sumsq_den, 'denominator');
    PERFORM reco._stat_check(p_sum_numden IS NOT NULL, 'the sum of products Σ num·den is missing',
                             'Pass Σ(num × den) over the units.');
    IF p_n = 0 THEN
        RETURN;
    END IF;
    mean_num := p_sum_num / p_n;
    mean_den := p_sum_den / p_n;
    mean := p_sum_num / nullif(p_sum_den, 0);
    IF p_n < 2 OR mean_den = 0 THEN
        RETURN;
    END IF;
    covariance := (p_sum_numden - p_sum_num * p_sum_den / p_n) / (p_n - 1);
    -- var_num/μd² + var_den μn²/μd⁴ − 2 cov μn/μd³, with r = μn/μd
    variance := greatest((var_num + var_den * (mean_num / mean_den) ^ 2 - 2 * covariance * (mean_num / mean_den))
                         / mean_den ^ 2, 0);
END $$;
COMMENT ON FUNCTION reco.stat_ratio_moments(bigint, float8, float8, float8, float8, float8) IS
$c$a ratio metric (Σnum / Σden over users, e.g. clicks per exposure) by the delta method. Inputs,
per arm: n users, Σnum, Σnum², Σden, Σden², Σnum·den (sums over users of their per-user numerator
and denominator). Outputs: mean = Σnum/Σden; variance = the per-user variance of the ratio,
var_num/μd² + var_den·μn²/μd⁴ − 2·cov·μn/μd³ (so Var(mean) ≈ variance / n, as gbstats);
mean_num, mean_den, var_num, var_den, covariance. Feed (n, mean, variance) of each arm to
stat_mean_test_moments: SELECT t.* FROM reco.stat_ratio_moments(...) a, reco.stat_ratio_moments(...) b,
reco.stat_mean_test_moments(n_a, a.mean, a.variance, n_b, b.mean, b.variance) t;$c$;

CREATE OR REPLACE FUNCTION reco.stat_cuped_test(
    p_n_a bigint, p_sum_y_a float8, p_sumsq_y_a float8, p_sum_x_a float8, p_sumsq_x_a float8, p_sum_xy_a float8,
    p_n_b bigint, p_sum_y_b float8, p_sumsq_y_b float8, p_sum_x_b float8, p_sumsq_x_b float8, p_sum_xy_b float8,
    p_alpha float8 DEFAULT 0.05,
    OUT theta float8,
    OUT mean_a float8, OUT mean_b float8, OUT adj_mean_a float8, OUT adj_mean_b float8,
    OUT var_a float8, OUT var_b float8, OUT adj_var_a float8, OUT adj_var_b float8,
    OUT variance_reduction float8,
    OUT lift float8, OUT lift_ci_low float8, OUT lift_ci_high float8, OUT df float8, OUT t float8, OUT p_value float8,
    OUT rel_lift float8, OUT rel_ci_low float8, OUT rel_ci_high float8, OUT rel_p_value float8)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    n bigint := p_n_a + p_n_b;
    var_x_all float8;
    cov_all float8;
    var_xa float8;
    var_xb float8;
    cov_a float8;
    cov_b float8;
    xbar float8;
    r record;
BEGIN
    var_a := reco._stat_variance(p_n_a, p_sum_y_a, p_sumsq_y_a, 'arm A, metric');
    var_b := reco._stat_variance(p_n_b, p_sum_y_b, p_sumsq_y_b, 'arm B, metric');
    var_xa := reco._stat_variance(p_n_a, p_sum_x_a, p_sumsq_x_a, 'arm A, covariate');
    var_xb := reco._stat_variance(p_n_b, p_sum_x_b, p_sumsq_x_b, 'arm B, covariate');
    PERFORM reco._stat_check(p_sum_xy_a IS NOT NULL AND p_sum_xy_b IS NOT NULL, 'the sums of products Σxy are missing',
                             'Pass Σ(y × x) over the users of each arm (x = the pre-period value).');
    PERFORM reco._stat_check_alpha(p_alpha);
    mean_a := p_sum_y_a / nullif(p_n_a, 0);
    mean_b := p_sum_y_b / nullif(p_n_b, 0);
    IF p_n_a < 2 OR p_n_b < 2 THEN
        RETURN;
    END IF;
    -- θ from both arms together (gbstats: the joint covariance over the joint covariate variance)
    var_x_all := reco._stat_variance(n, p_sum_x_a + p_sum_x_b, p_sumsq_x_a + p_sumsq_x_b, 'covariate');
    cov_all := (p_sum_xy_a + p_sum_xy_b - (p_sum_y_a + p_sum_y_b) * (p_sum_x_a + p_sum_x_b) / n) / (n - 1);
    theta := CASE WHEN var_x_all > 0 THEN cov_all / var_x_all ELSE 0 END;
    cov_a := (p_sum_xy_a - p_sum_y_a * p_sum_x_a / p_n_a) / (p_n_a - 1);
    cov_b := (p_sum_xy_b - p_sum_y_b * p_sum_x_b / p_n_b) / (p_n_b - 1);
    -- adjusted means centred on the pooled covariate mean: ȳ − θ (x̄ − x̄_pooled)
    xbar := (p_sum_x_a + p_sum_x_b) / n;
    adj_mean_a := mean_a - theta * (p_sum_x_a / p_n_a - xbar);
    adj_mean_b := mean_b - theta * (p_sum_x_b / p_n_b - xbar);
    adj_var_a := greatest(var_a + theta ^ 2 * var_xa - 2 * theta * cov_a, 0);
    adj_var_b := greatest(var_b + theta ^ 2 * var_xb - 2 * theta * cov_b, 0);
    IF var_a / p_n_a + var_b / p_n_b > 0 THEN
        variance_reduction := 1 - (adj_var_a / p_n_a + adj_var_b / p_n_b) / (var_a / p_n_a + var_b / p_n_b);
    END IF;
    SELECT * INTO r FROM reco.stat_mean_test_moments(p_n_a, adj_mean_a, adj_var_a, p_n_b, adj_mean_b, adj_var_b, p_alpha);
    lift := r.lift;
    lift_ci_low := r.lift_ci_low;
    lift_ci_high := r.lift_ci_high;
    df := r.df;
    t := r.t;
    p_value := r.p_value;
    rel_lift := r.rel_lift;
    rel_ci_low := r.rel_ci_low;
    rel_ci_high := r.rel_ci_high;
    rel_p_value := r.rel_p_value;
END $$;
COMMENT ON FUNCTION reco.stat_cuped_test(bigint, float8, float8, float8, float8, float8,
                                         bigint, float8, float8, float8, float8, float8, float8) IS
$c$CUPED (regression adjustment on a pre-period covariate) and the Welch test on the adjusted
values. Inputs, per arm: n, Σy, Σy², Σx, Σx², Σxy (y = the metric in the experiment, x = the same
user's pre-period value; 0 for users without one), then α. Outputs: theta = cov(y, x) / var(x)
over both arms pooled (as gbstats); mean_a/b (raw), adj_mean_a/b = ȳ − θ (x̄ − x̄_pooled); var_a/b
and adj_var_a/b = var_y + θ² var_x − 2θ cov_xy (per user); variance_reduction = 1 − Var(adjusted
difference) / Var(raw difference); then lift, its CI, df, t, p_value, rel_lift (over adj_mean_a), its
CI and rel_p_value as in stat_mean_test_moments on the adjusted means and variances.$c$;

-- ---------------------------------------------------------------------------------------
-- Intervals that stay in range at low counts (Wilson)
-- ---------------------------------------------------------------------------------------

-- Wilson score interval of one proportion
CREATE OR REPLACE FUNCTION reco._stat_wilson(p_n bigint, p_x bigint, p_z float8, OUT low float8, OUT high float8)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT greatest(c - h, 0), least(c + h, 1)
    FROM (SELECT (p_x + p_z * p_z / 2) / (p_n + p_z * p_z) AS c,
                 p_z / (p_n + p_z * p_z) * sqrt(p_x::float8 * (p_n - p_x) / p_n + p_z * p_z / 4) AS h) s
$$;
COMMENT ON FUNCTION reco._stat_wilson(bigint, bigint, float8) IS 'internal: Wilson score interval of x / n (n > 0)';

CREATE OR REPLACE FUNCTION reco.stat_proportion_intervals(
    p_n_a bigint, p_x_a bigint, p_n_b bigint, p_x_b bigint, p_alpha float8 DEFAULT 0.05,
    OUT lift_low float8, OUT lift_high float8, OUT rel_low float8, OUT rel_high float8)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    _z float8;
    _pa float8;
    _pb float8;
    _wa record;
    _wb record;
    _xa float8 := p_x_a;
    _xb float8 := p_x_b;
    _na float8 := p_n_a;
    _nb float8 := p_n_b;
    _lr float8;
    _se float8;
BEGIN
    PERFORM reco._stat_check_count(p_n_a, p_x_a, 'A');
    PERFORM reco._stat_check_count(p_n_b, p_x_b, 'B');
    PERFORM reco._stat_check_alpha(p_alpha);
    IF p_n_a = 0 OR p_n_b = 0 THEN
        RETURN;
    END IF;
    _z := -reco.stat_norm_ppf(p_alpha / 2);
    _pa := _xa / _na;
    _pb := _xb / _nb;
    -- Newcombe's hybrid score interval (his method 10) from the two Wilson intervals
    _wa := reco._stat_wilson(p_n_a, p_x_a, _z);
    _wb := reco._stat_wilson(p_n_b, p_x_b, _z);
    lift_low := (_pb - _pa) - sqrt((_pb - _wb.low) ^ 2 + (_wa.high - _pa) ^ 2);
    lift_high := (_pb - _pa) + sqrt((_wb.high - _pb) ^ 2 + (_pa - _wa.low) ^ 2);
    -- the ratio p_b / p_a on the log scale (Katz), ½ added to each count when one is 0
    IF p_x_a = 0 AND p_x_b = 0 THEN
        RETURN;
    END IF;
    IF p_x_a = 0 OR p_x_b = 0 THEN
        _xa := _xa + 0.5; _xb := _xb + 0.5; _na := _na + 0.5; _nb := _nb + 0.5;
    END IF;
    IF _xa = _na AND _xb = _nb THEN
        rel_low := 0;
        rel_high := 0;
        RETURN;
    END IF;
    _lr := ln((_xb / _nb) / (_xa / _na));
    _se := sqrt(greatest(1 / _xb - 1 / _nb + 1 / _xa - 1 / _na, 0));
    rel_low := exp(_lr - _z * _se) - 1;
    rel_high := exp(_lr + _z * _se) - 1;
END $$;
COMMENT ON FUNCTION reco.stat_proportion_intervals(bigint, bigint, bigint, bigint, float8) IS
$c$1−α intervals of a difference of two proportions that stay in range at low counts: lift_low/high for
rate_b − rate_a by Newcombe's hybrid score method (from the Wilson intervals: within [−1, 1], good coverage with
few conversions), rel_low/high for rate_b / rate_a − 1 by the log (Katz) interval of the ratio (½ added to every
count when one is 0), never below −100 %. The report shows these beside stat_proportion_test's z-test (whose Wald
intervals they replace for proportions). Example: SELECT * FROM reco.stat_proportion_intervals(1030, 2, 970, 9)
-- relative [+3.5 %, +2106 %], the interval of a significant +377.8 %$c$;
