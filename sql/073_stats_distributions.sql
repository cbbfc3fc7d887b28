-- Statistics for A/B tests, over sufficient statistics (n, Σx, Σx², Σxy), in SQL and plpgsql.
-- This file: the argument checks and the distributions the others use. By family:
--   073_stats_distributions  074_stats_tests  075_stats_bayes  076_stats_design
--   077_stats_sequential  078_stats_simulation
--
-- Experimentation platforms compute sufficient statistics in SQL and do the inference in a
-- separate service; here the inference is a function call too. No extension: PostgreSQL 15–18
-- have no t distribution, no erf, no lgamma (18 has), so the distributions are written here.
-- Formulas follow GrowthBook's gbstats where it has one (Welch test with the delta method for
-- the relative lift, ratio metrics, CUPED's pooled θ, the Beta-Bernoulli credible interval).
--
--   distributions (073)  reco.stat_norm_cdf / stat_norm_ppf / stat_t_cdf / stat_t_ppf / stat_chi2_sf,
--                        stat_beta_inc, stat_gamma_inc, stat_lgamma, stat_digamma, stat_trigamma
--   tests (074)          reco.stat_proportion_test, stat_mean_test (sums), stat_mean_test_moments
--                        (n, mean, variance), stat_ratio_moments (delta method), stat_cuped_test,
--                        stat_proportion_intervals (Wilson)
--   Bayesian (075)       reco.stat_bayes_proportion (+ stat_beta_prob_greater), stat_beta_ratio_interval
--   design (076)         reco.stat_srm, stat_sample_size(_arms), stat_p_adjust
--   sequential (077)     reco.stat_sequential_boundaries, stat_sequential_test, stat_msprt
--   simulation (078)     reco.stat_simulate: seeded A/A and A/B experiments drawn and analysed in SQL
--
-- Conventions: p values are two-sided; α is the significance level of a two-sided test and a
-- confidence interval is at level 1 − α; arm A is the control, B the treatment, lifts are
-- B − A (absolute) and (B − A) / A (relative). Statistics that are undefined for the data
-- (an empty arm, no variance) come back NULL; input that cannot be right (a negative count,
-- α outside (0, 1)) raises invalid_parameter_value with a HINT.

-- ---------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------

-- Raise invalid_parameter_value unless p_ok. VOLATILE on purpose: an IMMUTABLE function that
-- raises could be evaluated by the planner on constant arguments whatever p_ok is.
CREATE OR REPLACE FUNCTION reco._stat_check(p_ok boolean, p_message text, p_hint text)
RETURNS void
LANGUAGE plpgsql PARALLEL SAFE AS $$
BEGIN
    IF p_ok IS NOT TRUE THEN
        RAISE EXCEPTION '%', p_message USING ERRCODE = 'invalid_parameter_value', HINT = p_hint;
    END IF;
END $$;
COMMENT ON FUNCTION reco._stat_check(boolean, text, text) IS
    'internal: raise invalid_parameter_value with p_message and p_hint unless p_ok is true';

CREATE OR REPLACE FUNCTION reco._stat_check_alpha(p_alpha float8, p_name text DEFAULT 'alpha')
RETURNS void
LANGUAGE plpgsql PARALLEL SAFE AS $$
BEGIN
    IF NOT (p_alpha > 0 AND p_alpha < 1) OR p_alpha IS NULL THEN
        RAISE EXCEPTION '% must be between 0 and 1 (exclusive), got %', p_name, coalesce(p_alpha::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. 0.05 for a 95 % confidence level.';
    END IF;
END $$;
COMMENT ON FUNCTION reco._stat_check_alpha(float8, text) IS
    'internal: raise invalid_parameter_value unless 0 < p_alpha < 1';

-- ---------------------------------------------------------------------------------------
-- Special functions
-- ---------------------------------------------------------------------------------------

-- ln Γ(x), x > 0: Lanczos (g = 7, 9 terms), relative error ~1e-15.
CREATE OR REPLACE FUNCTION reco.stat_lgamma(p_x float8)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    x float8 := p_x;
    shift float8 := 0;
    s float8;
    t float8;
BEGIN
    IF NOT x > 0 THEN
        PERFORM reco._stat_check(false, format('stat_lgamma needs x > 0, got %s', p_x), 'Γ is only needed for positive arguments here.');
    END IF;
    IF x = 'Infinity' THEN
        RETURN x;
    END IF;
    IF x < 0.5 THEN  -- Γ(x) = Γ(x + 1) / x
        shift := -ln(x);
        x := x + 1;
    END IF;
    x := x - 1;
    s := 0.99999999999980993 + 676.5203681218851 / (x + 1) - 1259.1392167224028 / (x + 2)
         + 771.32342877765313 / (x + 3) - 176.61502916214059 / (x + 4) + 12.507343278686905 / (x + 5)
         - 0.13857109526572012 / (x + 6) + 9.9843695780195716e-6 / (x + 7) + 1.5056327351493116e-7 / (x + 8);
    t := x + 7.5;
    RETURN shift + 0.91893853320467274178 + (x + 0.5) * ln(t) - t + ln(s);
END $$;
COMMENT ON FUNCTION reco.stat_lgamma(float8) IS
$c$ln Γ(x) for x > 0 (Lanczos approximation, relative error ~1e-15; PostgreSQL before 18 has no
lgamma). Example: SELECT reco.stat_lgamma(10) -- ln(9!) = 12.8018...$c$;

-- ψ(x) = d/dx ln Γ(x), x > 0: recurrence up to x ≥ 10, then the asymptotic series.
CREATE OR REPLACE FUNCTION reco.stat_digamma(p_x float8)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    x float8 := p_x;
    r float8 := 0;
    f float8;
BEGIN
    IF NOT x > 0 THEN
        PERFORM reco._stat_check(false, format('stat_digamma needs x > 0, got %s', p_x), 'Only positive arguments are supported.');
    END IF;
    WHILE x < 10 LOOP
        r := r - 1 / x;
        x := x + 1;
    END LOOP;
    f := 1 / (x * x);
    RETURN r + ln(x) - 0.5 / x
           - f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f * (1.0 / 132 - f * (691.0 / 32760))))));
END $$;
COMMENT ON FUNCTION reco.stat_digamma(float8) IS
$c$digamma ψ(x) = Γ'(x)/Γ(x) for x > 0 (recurrence, then the asymptotic series; ~1e-14). Used for
the log-normal approximation of a Beta posterior. Example: SELECT reco.stat_digamma(1) -- −0.5772...$c$;

-- ψ₁(x) = d²/dx² ln Γ(x), x > 0.
CREATE OR REPLACE FUNCTION reco.stat_trigamma(p_x float8)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    x float8 := p_x;
    r float8 := 0;
    f float8;
BEGIN
    IF NOT x > 0 THEN
        PERFORM reco._stat_check(false, format('stat_trigamma needs x > 0, got %s', p_x), 'Only positive arguments are supported.');
    END IF;
    WHILE x < 10 LOOP
        r := r + 1 / (x * x);
        x := x + 1;
    END LOOP;
    f := 1 / (x * x);
    RETURN r + 1 / x + f / 2
           + f / x * (1.0 / 6 - f * (1.0 / 30 - f * (1.0 / 42 - f * (1.0 / 30 - f * (5.0 / 66 - f * (691.0 / 2730))))));
END $$;
COMMENT ON FUNCTION reco.stat_trigamma(float8) IS
$c$trigamma ψ₁(x) = d²/dx² ln Γ(x) for x > 0 (recurrence, then the asymptotic series; ~1e-14).
Example: SELECT reco.stat_trigamma(1) -- π²/6 = 1.6449...$c$;

-- ln(1 + x), accurate for small x (Goldberg's correction; PostgreSQL has no log1p)
CREATE OR REPLACE FUNCTION reco._stat_log1p(p_x float8)
RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN 1 + p_x = 1 THEN p_x ELSE ln(1 + p_x) * p_x / ((1 + p_x) - 1) END
$$;
COMMENT ON FUNCTION reco._stat_log1p(float8) IS 'internal: ln(1 + x), accurate for small x';

-- δ(x) = ln Γ(x) − ((x − ½) ln x − x + ½ ln 2π) for x ≥ 10 (Stirling series)
CREATE OR REPLACE FUNCTION reco._stat_lgamma_corr(p_x float8)
RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (1.0 / 12 - f * (1.0 / 360 - f * (1.0 / 1260 - f * (1.0 / 1680 - f * (1.0 / 1188
            - f * (691.0 / 360360 - f * (1.0 / 156))))))) / p_x
    FROM (SELECT 1 / (p_x * p_x) AS f) s
$$;
COMMENT ON FUNCTION reco._stat_lgamma_corr(float8) IS 'internal: the Stirling-series remainder of ln Γ(x), x ≥ 10';

-- ln B(a, b) without the cancellation of three large ln Γ (as R's lbeta)
CREATE OR REPLACE FUNCTION reco._stat_lbeta(p_a float8, p_b float8)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    p float8 := least(p_a, p_b);
    q float8 := greatest(p_a, p_b);
BEGIN
    IF p >= 10 THEN
        RETURN -0.5 * ln(q) + 0.91893853320467274178
               + reco._stat_lgamma_corr(p) + reco._stat_lgamma_corr(q) - reco._stat_lgamma_corr(p + q)
               + (p - 0.5) * ln(p / (p + q)) + q * reco._stat_log1p(-p / (p + q));
    ELSIF q >= 10 THEN
        RETURN reco.stat_lgamma(p) + reco._stat_lgamma_corr(q) - reco._stat_lgamma_corr(p + q)
               + p - p * ln(p + q) + (q - 0.5) * reco._stat_log1p(-p / (p + q));
    END IF;
    RETURN reco.stat_lgamma(p) + reco.stat_lgamma(q) - reco.stat_lgamma(p + q);
END $$;
COMMENT ON FUNCTION reco._stat_lbeta(float8, float8) IS 'internal: ln B(a, b), accurate for large arguments';

-- ---------------------------------------------------------------------------------------
-- Normal distribution
-- ---------------------------------------------------------------------------------------

-- Φ(x): W. J. Cody's rational Chebyshev approximations (as in R's pnorm), relative error
-- ~1e-15 down to x = −37.5 (and 0 below).
CREATE OR REPLACE FUNCTION reco.stat_norm_cdf(p_x float8)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    y float8 := abs(p_x);
    s float8;
    num float8;
    den float8;
    tail float8;   -- the tail beyond |x| (for |x| > 0.674)
    ys float8;
BEGIN
    IF p_x = 'NaN' THEN
        RETURN p_x;
    END IF;
    IF y <= 0.67448975 THEN
        s := p_x * p_x;
        num := (((0.065682337918207449113 * s + 2.2352520354606839287) * s + 161.02823106855587881) * s
                + 1067.6894854603709582) * s + 18154.981253343561249;
        den := (((s + 47.20258190468824187) * s + 976.09855173777669322) * s
                + 10260.932208618978205) * s + 45507.789335026729956;
        RETURN 0.5 + p_x * num / den;
    ELSIF y <= 5.656854249492380195 THEN  -- √32
        num := (((((((1.0765576773720192317e-8 * y + 0.39894151208813466764) * y + 8.8831497943883759412) * y
                + 93.506656132177855979) * y + 597.27027639480026226) * y + 2494.5375852903726711) * y
                + 6848.1904505362823326) * y + 11602.651437647350124) * y + 9842.7148383839780218;
        den := (((((((y + 22.266688044328115691) * y + 235.38790178262499861) * y + 1519.377599407554805) * y
                + 6485.558298266760755) * y + 18615.571640885098091) * y + 34900.952721145977266) * y
                + 38912.003286093271411) * y + 19685.429676859990727;
        tail := num / den;
    ELSIF y < 37.5 THEN
        s := 1 / (p_x * p_x);
        num := ((((0.02307344176494017303 * s + 0.21589853405795699) * s + 0.1274011611602473639) * s
                + 0.022235277870649807) * s + 0.001421619193227893466) * s + 2.9112874951168792e-5;
        den := ((((s + 1.28426009614491121) * s + 0.468238212480865118) * s + 0.0659881378689285515) * s
                + 0.00378239633202758244) * s + 7.29751555083966205e-5;
        tail := (0.398942280401432677939946059934 - s * num / den) / y;
    ELSE
        RETURN CASE WHEN p_x > 0 THEN 1 ELSE 0 END;
    END IF;
    -- exp(−y²/2) split so that the big part is exact
    ys := trunc(y * 16) / 16;
    tail := exp(-ys * ys / 2) * exp(-(y - ys) * (y + ys) / 2) * tail;
    RETURN CASE WHEN p_x > 0 THEN 1 - tail ELSE tail END;
END $$;
COMMENT ON FUNCTION reco.stat_norm_cdf(float8) IS
$c$standard normal cumulative distribution Φ(x) = P(Z ≤ x) (Cody's algorithm, relative error
~1e-15 in both tails; use stat_norm_cdf(−x) for the upper tail, it is exact).
Example: SELECT reco.stat_norm_cdf(1.96) -- 0.9750021048517795$c$;

-- Φ⁻¹(p): Acklam's rational approximation, then one Halley step on stat_norm_cdf.
CREATE OR REPLACE FUNCTION reco.stat_norm_ppf(p_p float8)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    q float8 := least(p_p, 1 - p_p);  -- 1 − p is exact for p ≥ 0.5
    r float8;
    s float8;
    x float8;
    e float8;
    u float8;
BEGIN
    IF NOT (p_p >= 0 AND p_p <= 1) THEN
        PERFORM reco._stat_check(false, format('stat_norm_ppf needs a probability in [0, 1], got %s', p_p),
                                 'Pass a probability, e.g. 0.975 for the 97.5 % quantile.');
    END IF;
    IF p_p = 0 THEN
        RETURN '-Infinity';
    ELSIF p_p = 1 THEN
        RETURN 'Infinity';
    ELSIF p_p = 0.5 THEN
        RETURN 0;
    END IF;
    IF q < 0.02425 THEN
        r := sqrt(-2 * ln(q));
        x := (((((-7.784894002430293e-03 * r - 3.223964580411365e-01) * r - 2.400758277161838e+00) * r
               - 2.549732539343734e+00) * r + 4.374664141464968e+00) * r + 2.938163982698783e+00)
             / ((((7.784695709041462e-03 * r + 3.224671290700398e-01) * r + 2.445134137142996e+00) * r
               + 3.754408661907416e+00) * r + 1);
    ELSE
        r := q - 0.5;
        s := r * r;
        x := (((((-3.969683028665376e+01 * s + 2.209460984245205e+02) * s - 2.759285104469687e+02) * s
               + 1.383577518672690e+02) * s - 3.066479806614716e+01) * s + 2.506628277459239e+00) * r
             / (((((-5.447609879822406e+01 * s + 1.615858368580409e+02) * s - 1.556989798598866e+02) * s
               + 6.680131188771972e+01) * s - 1.328068155288572e+01) * s + 1);
    END IF;
    -- Halley step (x < 0 here): relative error of the result ~1e-15 (Acklam alone: 1e-9)
    IF q >= 1e-305 THEN  -- (below, exp(x²/2) would overflow)
        e := reco.stat_norm_cdf(x) - q;
        u := e * 2.50662827463100050242 * exp(x * x / 2);
        x := x - u / (1 + x * u / 2);
    END IF;
    RETURN CASE WHEN p_p > 0.5 THEN -x ELSE x END;
END $$;
COMMENT ON FUNCTION reco.stat_norm_ppf(float8) IS
$c$standard normal quantile Φ⁻¹(p) for p in [0, 1] (Acklam's approximation refined by a Halley
step; relative error ~1e-15; ±Infinity at 0 and 1). Raises invalid_parameter_value outside [0, 1].
Example: SELECT reco.stat_norm_ppf(0.975) -- 1.959963984540054$c$;

-- ---------------------------------------------------------------------------------------
-- Incomplete beta and gamma; t and χ² distributions
-- ---------------------------------------------------------------------------------------

-- Continued fraction of the incomplete beta function (modified Lentz), for x < (a+1)/(a+b+2).
CREATE OR REPLACE FUNCTION reco._stat_betacf(a float8, b float8, x float8)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    tiny CONSTANT float8 := 1e-300;
    eps CONSTANT float8 := 1e-16;
    qab float8 := a + b;
    qap float8 := a + 1;
    qam float8 := a - 1;
    c float8 := 1;
    d float8 := 1 - qab * x / qap;
    h float8;
    aa float8;
    del float8;
    m int := 1;
    m2 int;
    maxit int := 1000 + 20 * ceil(sqrt(greatest(a, b)))::int;
BEGIN
    IF abs(d) < tiny THEN d := tiny; END IF;
    d := 1 / d;
    h := d;
    LOOP
        m2 := 2 * m;
        aa := m * (b - m) * x / ((qam + m2) * (a + m2));
        d := 1 + aa * d;
        IF abs(d) < tiny THEN d := tiny; END IF;
        c := 1 + aa / c;
        IF abs(c) < tiny THEN c := tiny; END IF;
        d := 1 / d;
        h := h * d * c;
        aa := -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d := 1 + aa * d;
        IF abs(d) < tiny THEN d := tiny; END IF;
        c := 1 + aa / c;
        IF abs(c) < tiny THEN c := tiny; END IF;
        d := 1 / d;
        del := d * c;
        h := h * del;
        EXIT WHEN abs(del - 1) < eps OR m >= maxit;
        m := m + 1;
    END LOOP;
    RETURN h;
END $$;
COMMENT ON FUNCTION reco._stat_betacf(float8, float8, float8) IS
    'internal: continued fraction of the regularised incomplete beta function (modified Lentz)';

-- I_x(a, b) with y = 1 − x given separately (no cancellation when x is close to 1).
CREATE OR REPLACE FUNCTION reco._stat_ibeta(a float8, b float8, x float8, y float8)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    lx float8;
    ly float8;
    front float8;
BEGIN
    IF x <= 0 THEN
        RETURN 0;
    ELSIF y <= 0 THEN
        RETURN 1;
    END IF;
    -- ln x and ln(1 − x) from the smaller of the two (x close to 1: t with a huge df)
    IF x < y THEN
        lx := ln(x);
        ly := reco._stat_log1p(-x);
    ELSE
        lx := reco._stat_log1p(-y);
        ly := ln(y);
    END IF;
    front := a * lx + b * ly - reco._stat_lbeta(a, b);
    front := CASE WHEN front < -700 THEN 0 ELSE exp(front) END;
    IF front = 0 THEN
        RETURN CASE WHEN x < (a + 1) / (a + b + 2) THEN 0 ELSE 1 END;
    END IF;
    IF x < (a + 1) / (a + b + 2) THEN
        RETURN front * reco._stat_betacf(a, b, x) / a;
    END IF;
    RETURN 1 - front * reco._stat_betacf(b, a, y) / b;
END $$;
COMMENT ON FUNCTION reco._stat_ibeta(float8, float8, float8, float8) IS
    'internal: regularised incomplete beta I_x(a, b), with y = 1 − x passed separately';

CREATE OR REPLACE FUNCTION reco.stat_beta_inc(p_a float8, p_b float8, p_x float8)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    PERFORM reco._stat_check(p_a > 0 AND p_b > 0, format('stat_beta_inc needs a > 0 and b > 0, got a = %s, b = %s', p_a, p_b),
                             'The shape parameters of a Beta distribution are positive.');
    PERFORM reco._stat_check(p_x >= 0 AND p_x <= 1, format('stat_beta_inc needs x in [0, 1], got %s', p_x),
                             'x is a probability.');
    RETURN reco._stat_ibeta(p_a, p_b, p_x, 1 - p_x);
END $$;
COMMENT ON FUNCTION reco.stat_beta_inc(float8, float8, float8) IS
$c$regularised incomplete beta function I_x(a, b) = P(X ≤ x) for X ~ Beta(a, b) (continued
fraction, modified Lentz; as scipy.special.betainc(a, b, x)). Inputs: a > 0, b > 0, x in [0, 1].
Example: SELECT reco.stat_beta_inc(2, 3, 0.4) -- 0.5248$c$;

-- Regularised incomplete gamma: P(a, x) (lower) or Q(a, x) = 1 − P (upper), each computed
-- directly where it is small (series for x < a + 1, continued fraction beyond).
CREATE OR REPLACE FUNCTION reco._stat_gamma_pq(a float8, x float8, upper boolean)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    tiny CONSTANT float8 := 1e-300;
    eps CONSTANT float8 := 1e-16;
    front float8;
    s float8;
    del float8;
    ap float8;
    b float8;
    c float8;
    d float8;
    h float8;
    an float8;
    i int := 1;
    maxit int := 1000 + 20 * ceil(sqrt(a))::int;
BEGIN
    IF x <= 0 THEN
        RETURN CASE WHEN upper THEN 1 ELSE 0 END;
    ELSIF x = 'Infinity' THEN
        RETURN CASE WHEN upper THEN 0 ELSE 1 END;
    END IF;
    front := -x + a * ln(x) - reco.stat_lgamma(a);
    IF front < -700 THEN  -- P or Q below 1e-300
        RETURN CASE WHEN (x < a + 1) = upper THEN 1 ELSE 0 END;
    END IF;
    front := exp(front);
    IF x < a + 1 THEN  -- series for P
        ap := a;
        s := 1 / a;
        del := s;
        LOOP
            ap := ap + 1;
            del := del * x / ap;
            s := s + del;
            EXIT WHEN abs(del) < abs(s) * eps OR i >= maxit;
            i := i + 1;
        END LOOP;
        s := s * front;
        RETURN CASE WHEN upper THEN 1 - s ELSE s END;
    END IF;
    -- continued fraction for Q (modified Lentz)
    b := x + 1 - a;
    c := 1 / tiny;
    d := 1 / b;
    h := d;
    LOOP
        an := -i * (i - a);
        b := b + 2;
        d := an * d + b;
        IF abs(d) < tiny THEN d := tiny; END IF;
        c := b + an / c;
        IF abs(c) < tiny THEN c := tiny; END IF;
        d := 1 / d;
        del := d * c;
        h := h * del;
        EXIT WHEN abs(del - 1) < eps OR i >= maxit;
        i := i + 1;
    END LOOP;
    s := front * h;
    RETURN CASE WHEN upper THEN s ELSE 1 - s END;
END $$;
COMMENT ON FUNCTION reco._stat_gamma_pq(float8, float8, boolean) IS
    'internal: regularised incomplete gamma, lower P(a, x) or upper Q(a, x)';

CREATE OR REPLACE FUNCTION reco.stat_gamma_inc(p_a float8, p_x float8)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    PERFORM reco._stat_check(p_a > 0 AND p_x >= 0, format('stat_gamma_inc needs a > 0 and x >= 0, got a = %s, x = %s', p_a, p_x),
                             'P(a, x) is the cdf at x of a Gamma(a, 1) distribution.');
    RETURN reco._stat_gamma_pq(p_a, p_x, false);
END $$;
COMMENT ON FUNCTION reco.stat_gamma_inc(float8, float8) IS
$c$regularised lower incomplete gamma function P(a, x) = P(X ≤ x) for X ~ Gamma(a, 1) (series /
continued fraction; as scipy.special.gammainc(a, x)). Inputs: a > 0, x ≥ 0.
Example: SELECT reco.stat_gamma_inc(3, 2) -- 0.3233$c$;

CREATE OR REPLACE FUNCTION reco.stat_chi2_sf(p_x float8, p_df float8)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    PERFORM reco._stat_check(p_df > 0, format('stat_chi2_sf needs df > 0, got %s', p_df),
                             'Degrees of freedom are positive (cells − 1 for a goodness-of-fit test).');
    IF p_x <= 0 THEN
        RETURN 1;
    END IF;
    RETURN reco._stat_gamma_pq(p_df / 2, p_x / 2, true);
END $$;
COMMENT ON FUNCTION reco.stat_chi2_sf(float8, float8) IS
$c$χ² survival function P(X > x) for X ~ χ²(df), through the regularised upper incomplete gamma
Q(df/2, x/2) (accurate for tiny p values). Inputs: x, df > 0. Example: SELECT
reco.stat_chi2_sf(3.841458820694124, 1) -- 0.05$c$;

-- Two-sided tail of Student's t: P(|T| ≥ |t|) = I_{ν/(ν+t²)}(ν/2, 1/2). From ν = 10⁴ on, the
-- continued fraction converges slowly and loses digits; there Hill's normalising transformation
-- (Algorithm 395, 1970) is accurate to ~1e-12 relative.
CREATE OR REPLACE FUNCTION reco._stat_t_2sided(p_t float8, p_df float8)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    at float8 := abs(p_t);
    a float8;
    b float8;
    y float8;
    l float8;
BEGIN
    IF p_t = 'NaN' THEN
        RETURN p_t;
    ELSIF at = 'Infinity' THEN
        RETURN 0;
    ELSIF p_df > 1e100 THEN
        RETURN 2 * reco.stat_norm_cdf(-at);
    ELSIF p_df >= 1e4 THEN
        a := p_df - 0.5;
        b := 48 * a * a;
        y := a * CASE WHEN at > 1e100 THEN 2 * ln(at) - ln(p_df) ELSE reco._stat_log1p(at * at / p_df) END;
        y := (((((-0.4 * y - 3.3) * y - 24.0) * y - 85.5) / (0.8 * y * y + 100.0 + b) + y + 3.0) / b + 1.0) * sqrt(y);
        RETURN 2 * reco.stat_norm_cdf(-y);
    ELSIF at > 1e100 THEN  -- x = df/t² is tiny: I_x(a, ½) ≈ x^a / (a B(a, ½))
        l := p_df / 2 * (ln(p_df) - 2 * ln(at)) - ln(p_df / 2) - reco._stat_lbeta(p_df / 2, 0.5);
        RETURN CASE WHEN l < -700 THEN 0 ELSE exp(l) END;
    END IF;
    RETURN reco._stat_ibeta(p_df / 2, 0.5, p_df / (p_df + at * at), at * at / (p_df + at * at));
END $$;
COMMENT ON FUNCTION reco._stat_t_2sided(float8, float8) IS
    'internal: two-sided p value P(|T| ≥ |t|) of Student''s t with df degrees of freedom';

CREATE OR REPLACE FUNCTION reco.stat_t_cdf(p_t float8, p_df float8)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    tail float8;
BEGIN
    PERFORM reco._stat_check(p_df > 0, format('stat_t_cdf needs df > 0, got %s', p_df),
                             'Degrees of freedom are positive (Welch: from stat_mean_test).');
    IF p_t = 'NaN' THEN
        RETURN p_t;
    END IF;
    tail := reco._stat_t_2sided(p_t, p_df) / 2;
    RETURN CASE WHEN p_t > 0 THEN 1 - tail ELSE tail END;
END $$;
COMMENT ON FUNCTION reco.stat_t_cdf(float8, float8) IS
$c$Student's t cumulative distribution P(T ≤ t) with df > 0 degrees of freedom (df may be
fractional, as Welch's), through the regularised incomplete beta function.
Example: SELECT reco.stat_t_cdf(2.0, 10) -- 0.9633059826146299$c$;

-- density of Student's t
CREATE OR REPLACE FUNCTION reco._stat_t_pdf(p_t float8, p_df float8)
RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN l < -700 THEN 0 ELSE exp(l) END
    FROM (SELECT -reco._stat_lbeta(p_df / 2, 0.5) - 0.5 * ln(p_df)
                 - (p_df + 1) / 2 * CASE WHEN abs(p_t) > 1e100 THEN 2 * ln(abs(p_t)) - ln(p_df)
                                         ELSE reco._stat_log1p(p_t * p_t / p_df) END AS l) s
$$;
COMMENT ON FUNCTION reco._stat_t_pdf(float8, float8) IS 'internal: density of Student''s t';

-- Quantile of Student's t: Cornish–Fisher start, then Newton on ln cdf kept inside a bracket
-- (bisection when a step leaves it). Closed forms for df = 1 and 2.
CREATE OR REPLACE FUNCTION reco.stat_t_ppf(p_p float8, p_df float8)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    q float8 := least(p_p, 1 - p_p);   -- solve in the lower tail: x ≤ 0
    z float8;
    v float8 := p_df;
    x float8;
    lo float8;
    hi float8 := 0;
    c float8;
    d float8;
    xn float8;
    i int := 0;
BEGIN
    PERFORM reco._stat_check(p_df > 0, format('stat_t_ppf needs df > 0, got %s', p_df),
                             'Degrees of freedom are positive.');
    IF NOT (p_p >= 0 AND p_p <= 1) THEN
        PERFORM reco._stat_check(false, format('stat_t_ppf needs a probability in [0, 1], got %s', p_p),
                                 'Pass a probability, e.g. 0.975 for the 97.5 % quantile.');
    END IF;
    IF p_p = 0 THEN
        RETURN '-Infinity';
    ELSIF p_p = 1 THEN
        RETURN 'Infinity';
    ELSIF p_p = 0.5 THEN
        RETURN 0;
    END IF;
    IF v = 1 THEN
        x := -1 / tan(pi() * q);
    ELSIF v = 2 THEN
        x := (2 * q - 1) / sqrt(2 * q * (1 - q));
    ELSE
        z := reco.stat_norm_ppf(q);
        x := z + (z ^ 3 + z) / (4 * v) + (5 * z ^ 5 + 16 * z ^ 3 + 3 * z) / (96 * v ^ 2)
               + (3 * z ^ 7 + 19 * z ^ 5 + 17 * z ^ 3 - 15 * z) / (384 * v ^ 3)
               + (79 * z ^ 9 + 776 * z ^ 7 + 1482 * z ^ 5 - 1920 * z ^ 3 - 945 * z) / (92160 * v ^ 4);
        IF NOT x < 0 THEN  -- the expansion fails for small df far in the tail
            x := z;
        END IF;
        -- bracket: cdf(lo) ≤ q ≤ cdf(hi)
        lo := x;
        WHILE reco.stat_t_cdf(lo, v) > q LOOP
            hi := lo;
            lo := 2 * lo - 1;
            IF lo < -1e300 THEN  -- beyond float8
                RETURN CASE WHEN p_p > 0.5 THEN 'Infinity'::float8 ELSE '-Infinity'::float8 END;
            END IF;
        END LOOP;
        LOOP
            c := reco.stat_t_cdf(x, v);
            EXIT WHEN c = q;
            IF c > q THEN hi := least(hi, x); ELSE lo := greatest(lo, x); END IF;
            d := reco._stat_t_pdf(x, v);
            IF c > 0 AND d > 0 THEN
                xn := x - (ln(c) - ln(q)) * c / d;
            END IF;
            IF NOT (c > 0 AND d > 0 AND xn > lo AND xn < hi) THEN
                -- bisection, geometric far in the tail
                xn := CASE WHEN hi < -1 THEN -exp((ln(-lo) + ln(-hi)) / 2) ELSE (lo + hi) / 2 END;
            END IF;
            i := i + 1;
            EXIT WHEN abs(xn - x) <= 1e-14 * abs(xn) OR i >= 300;
            x := xn;
        END LOOP;
    END IF;
    RETURN CASE WHEN p_p > 0.5 THEN -x ELSE x END;
END $$;
COMMENT ON FUNCTION reco.stat_t_ppf(float8, float8) IS
$c$quantile of Student's t with df > 0 degrees of freedom (Cornish–Fisher start, then a
bracketed Newton iteration on the cdf; closed forms for df 1 and 2). Example:
SELECT reco.stat_t_ppf(0.975, 10) -- 2.2281388519649385$c$;
