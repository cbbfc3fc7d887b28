-- Statistics for A/B tests, over sufficient statistics (n, Σx, Σx², Σxy), in SQL and plpgsql.
--
-- Experimentation platforms compute sufficient statistics in SQL and do the inference in a
-- separate service; here the inference is a function call too. No extension: PostgreSQL 15–18
-- have no t distribution, no erf, no lgamma (18 has), so the distributions are written here.
-- Formulas follow GrowthBook's gbstats where it has one (Welch test with the delta method for
-- the relative lift, ratio metrics, CUPED's pooled θ, the Beta-Bernoulli credible interval).
--
--   distributions   reco.stat_norm_cdf / stat_norm_ppf / stat_t_cdf / stat_t_ppf / stat_chi2_sf,
--                   stat_beta_inc, stat_gamma_inc, stat_lgamma, stat_digamma, stat_trigamma
--   tests           reco.stat_proportion_test, stat_mean_test (sums), stat_mean_test_moments
--                   (n, mean, variance), stat_ratio_moments (delta method), stat_cuped_test,
--                   stat_bayes_proportion (+ stat_beta_prob_greater)
--   design/checks   reco.stat_srm, stat_sample_size(_arms), stat_sequential_boundaries,
--                   stat_sequential_test, stat_p_adjust
--   simulation      reco.stat_simulate: seeded A/A and A/B experiments drawn and analysed in SQL
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
-- Bayesian Beta-Bernoulli
-- ---------------------------------------------------------------------------------------

-- P(X > Y), X ~ Beta(a1, b1), Y ~ Beta(a2, b2): Evan Miller's closed form
--   P(X > Y) = Σ_{i=0}^{a1−1} B(a2+i, b1+b2) / ((b1+i) B(1+i, b1) B(a2, b2))   (a1 an integer)
-- summed over whichever of a1, b2, a2, b1 is the smallest integer (by the symmetries
-- X > Y ⇔ 1−Y > 1−X and P(X > Y) = 1 − P(Y > X)); terms by their ratio
-- (a2+i)(b1+i) / ((a2+b1+b2+i)(1+i)). Above p_max_terms terms (or no integer parameter), the
-- normal approximation with the Beta means and variances.
CREATE OR REPLACE FUNCTION reco._stat_beta_gt(a1 float8, b1 float8, a2 float8, b2 float8, p_max_terms int,
                                              OUT prob float8, OUT exact boolean)
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    k float8 := 'Infinity';
    form int := 0;
    x_a float8;  -- the sum's parameters, as (a1, b1, a2, b2) of the formula
    x_b float8;
    y_a float8;
    y_b float8;
    lt float8;
    s float8 := 0;
    i int;
    m1 float8;
    m2 float8;
    v1 float8;
    v2 float8;
BEGIN
    IF a1 = trunc(a1) AND a1 < k THEN k := a1; form := 1; END IF;
    IF b2 = trunc(b2) AND b2 < k THEN k := b2; form := 2; END IF;
    IF a2 = trunc(a2) AND a2 < k THEN k := a2; form := 3; END IF;
    IF b1 = trunc(b1) AND b1 < k THEN k := b1; form := 4; END IF;
    IF form = 0 OR k > p_max_terms THEN
        m1 := a1 / (a1 + b1);
        m2 := a2 / (a2 + b2);
        v1 := a1 * b1 / ((a1 + b1) ^ 2 * (a1 + b1 + 1));
        v2 := a2 * b2 / ((a2 + b2) ^ 2 * (a2 + b2 + 1));
        prob := reco.stat_norm_cdf((m1 - m2) / sqrt(v1 + v2));
        exact := false;
        RETURN;
    END IF;
    -- P(X > Y) = P(X' > Y') with (X', Y') chosen so that the sum runs over X''s first parameter
    IF form = 1 THEN x_a := a1; x_b := b1; y_a := a2; y_b := b2;     -- P(X > Y)
    ELSIF form = 2 THEN x_a := b2; x_b := a2; y_a := b1; y_b := a1;  -- P(1−Y > 1−X)
    ELSIF form = 3 THEN x_a := a2; x_b := b2; y_a := a1; y_b := b1;  -- 1 − P(Y > X)
    ELSE x_a := b1; x_b := a1; y_a := b2; y_b := a2;                 -- 1 − P(1−X > 1−Y)
    END IF;
    lt := reco.stat_lgamma(y_a) + reco.stat_lgamma(x_b + y_b) - reco.stat_lgamma(y_a + x_b + y_b)
          - (reco.stat_lgamma(y_a) + reco.stat_lgamma(y_b) - reco.stat_lgamma(y_a + y_b));
    FOR i IN 0 .. k::int - 1 LOOP
        IF lt > -700 THEN
            s := s + exp(lt);
        END IF;
        lt := lt + ln((y_a + i) * (x_b + i) / ((y_a + x_b + y_b + i) * (1 + i)));
    END LOOP;
    s := least(greatest(s, 0), 1);
    prob := CASE WHEN form <= 2 THEN s ELSE 1 - s END;
    exact := true;
END $$;
COMMENT ON FUNCTION reco._stat_beta_gt(float8, float8, float8, float8, int) IS
    'internal: P(X > Y) for independent Beta variables, exact sum or normal approximation';

CREATE OR REPLACE FUNCTION reco.stat_beta_prob_greater(p_a1 float8, p_b1 float8, p_a2 float8, p_b2 float8,
                                                       p_max_terms int DEFAULT 100000)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    PERFORM reco._stat_check(p_a1 > 0 AND p_b1 > 0 AND p_a2 > 0 AND p_b2 > 0,
                             format('Beta parameters must be positive, got (%s, %s) and (%s, %s)', p_a1, p_b1, p_a2, p_b2),
                             'A Beta(α, β) posterior has α = prior α + successes, β = prior β + failures.');
    RETURN (reco._stat_beta_gt(p_a1, p_b1, p_a2, p_b2, p_max_terms)).prob;
END $$;
COMMENT ON FUNCTION reco.stat_beta_prob_greater(float8, float8, float8, float8, int) IS
$c$P(X > Y) for independent X ~ Beta(a1, b1), Y ~ Beta(a2, b2): Evan Miller's exact sum when one
of the four parameters is an integer ≤ p_max_terms (default 100000; the sum has that many terms),
otherwise the normal approximation with the Beta means and variances.
Example: SELECT reco.stat_beta_prob_greater(52, 50, 50, 52) -- P(B > A) for 51/100 vs 49/100$c$;

CREATE OR REPLACE FUNCTION reco.stat_bayes_proportion(
    p_n_a bigint, p_x_a bigint, p_n_b bigint, p_x_b bigint, p_alpha float8 DEFAULT 0.05,
    p_prior_a float8 DEFAULT 1, p_prior_b float8 DEFAULT 1, p_max_terms int DEFAULT 100000,
    OUT mean_a float8, OUT mean_b float8, OUT p_b_better float8,
    OUT loss_b float8, OUT loss_a float8,
    OUT rel_lift float8, OUT rel_ci_low float8, OUT rel_ci_high float8, OUT method text)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    aa float8;
    ba float8;
    ab float8;
    bb float8;
    g record;
    h1 float8;
    h2 float8;
    d float8;
    s float8;
    mu float8;
    sd float8;
    zc float8;
BEGIN
    PERFORM reco._stat_check_count(p_n_a, p_x_a, 'A');
    PERFORM reco._stat_check_count(p_n_b, p_x_b, 'B');
    PERFORM reco._stat_check_alpha(p_alpha);
    PERFORM reco._stat_check(p_prior_a > 0 AND p_prior_b > 0,
                             format('the Beta prior needs positive parameters, got (%s, %s)', p_prior_a, p_prior_b),
                             'Beta(1, 1), the default, is the uniform prior.');
    aa := p_prior_a + p_x_a;
    ba := p_prior_b + p_n_a - p_x_a;
    ab := p_prior_a + p_x_b;
    bb := p_prior_b + p_n_b - p_x_b;
    mean_a := aa / (aa + ba);
    mean_b := ab / (ab + bb);
    g := reco._stat_beta_gt(ab, bb, aa, ba, p_max_terms);
    p_b_better := g.prob;
    IF g.exact THEN
        -- Chris Stucchio's closed form: E[max(pA − pB, 0)] = mA·P(A⁺ > B) − mB·P(A > B⁺), where A⁺
        -- (B⁺) is the Beta with one more success
        h1 := (reco._stat_beta_gt(aa + 1, ba, ab, bb, p_max_terms)).prob;
        h2 := (reco._stat_beta_gt(aa, ba, ab + 1, bb, p_max_terms)).prob;
        loss_b := greatest(mean_a * h1 - mean_b * h2, 0);
        method := 'exact';
    ELSE
        -- pA − pB ≈ N(d, s²): E[max(pA − pB, 0)] = d Φ(d/s) + s φ(d/s)
        d := mean_a - mean_b;
        s := sqrt(aa * ba / ((aa + ba) ^ 2 * (aa + ba + 1)) + ab * bb / ((ab + bb) ^ 2 * (ab + bb + 1)));
        loss_b := d * reco.stat_norm_cdf(d / s) + s * exp(greatest(-((d / s) ^ 2) / 2, -700)) / 2.50662827463100050242;
        method := 'normal';
    END IF;
    loss_a := greatest(loss_b + mean_b - mean_a, 0);
    -- relative lift pB/pA − 1: log-normal approximation (gbstats), ln p ≈ N(ψ(α) − ψ(α+β), ψ₁(α) − ψ₁(α+β))
    mu := reco.stat_digamma(ab) - reco.stat_digamma(ab + bb) - reco.stat_digamma(aa) + reco.stat_digamma(aa + ba);
    sd := sqrt(reco.stat_trigamma(ab) - reco.stat_trigamma(ab + bb) + reco.stat_trigamma(aa) - reco.stat_trigamma(aa + ba));
    zc := -reco.stat_norm_ppf(p_alpha / 2);
    rel_lift := exp(mu) - 1;
    rel_ci_low := exp(mu - zc * sd) - 1;
    rel_ci_high := exp(mu + zc * sd) - 1;
END $$;
COMMENT ON FUNCTION reco.stat_bayes_proportion(bigint, bigint, bigint, bigint, float8, float8, float8, int) IS
$c$Bayesian Beta-Bernoulli comparison of two conversion rates. Inputs: users n and conversions x
per arm, α for a 1−α credible interval (default 0.05), the Beta prior (default Beta(1, 1)), and
p_max_terms (default 100000). Posteriors: Beta(prior_a + x, prior_b + n − x). Outputs: posterior
means mean_a, mean_b; p_b_better = P(pB > pA); loss_b = E[max(pA − pB, 0)] (expected loss of
shipping B) and loss_a = E[max(pB − pA, 0)] (of keeping A); method = 'exact' (Evan Miller's sum and
Stucchio's loss formula, when a posterior parameter is an integer ≤ p_max_terms) or 'normal'
(normal approximation of the posteriors, for very large counts); rel_lift = exp(μ) − 1 and its
credible interval exp(μ ∓ z σ) − 1 from gbstats' log-normal approximation (μ, σ² from digamma and
trigamma of the posterior parameters); no simulation. Example: SELECT * FROM
reco.stat_bayes_proportion(100, 49, 100, 51);$c$;

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

-- ---------------------------------------------------------------------------------------
-- Group-sequential monitoring
-- ---------------------------------------------------------------------------------------

-- Probability, and its derivative in c, that the z statistic at the next look leaves (−c, c)
-- from the continuation region of the previous look, whose density times integration weight is
-- p_g on the points p_u: Z_k √t_k = Z_{k−1} √t_{k−1} + N(0, t_k − t_{k−1}) under H0.
CREATE OR REPLACE FUNCTION reco._stat_seq_exit(p_u float8[], p_g float8[], p_t0 float8, p_t1 float8, p_c float8,
                                               OUT prob float8, OUT deriv float8)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    -- (arguments clipped at −30 / exp(−300): beyond, the terms are negligible and products of
    -- tiny numbers would raise an underflow error)
    SELECT sum(g * (reco.stat_norm_cdf(greatest((-p_c * sqrt(p_t1) - u * sqrt(p_t0)) / sqrt(p_t1 - p_t0), -30))
                    + reco.stat_norm_cdf(greatest((-p_c * sqrt(p_t1) + u * sqrt(p_t0)) / sqrt(p_t1 - p_t0), -30)))),
           -sqrt(p_t1 / (p_t1 - p_t0)) / 2.50662827463100050242
           * sum(g * (exp(greatest(-((p_c * sqrt(p_t1) + u * sqrt(p_t0)) ^ 2) / (2 * (p_t1 - p_t0)), -300))
                      + exp(greatest(-((p_c * sqrt(p_t1) - u * sqrt(p_t0)) ^ 2) / (2 * (p_t1 - p_t0)), -300))))
    FROM unnest(p_u, p_g) AS x(u, g)
$$;
COMMENT ON FUNCTION reco._stat_seq_exit(float8[], float8[], float8, float8, float8) IS
    'internal: crossing probability of (−c, c) at the next look, and its derivative in c (group-sequential recursion)';

CREATE OR REPLACE FUNCTION reco.stat_sequential_boundaries(p_looks int, p_alpha float8 DEFAULT 0.05,
                                                           p_fractions float8[] DEFAULT NULL)
RETURNS TABLE (look int, info_fraction float8, alpha_spent float8, alpha_look float8,
               z_boundary float8, nominal_p float8)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    cap CONSTANT float8 := 8.5;   -- the density beyond |z| = 8.5 is below 1e-15: not integrated
    t float8[];
    za float8;
    spent_prev float8 := 0;
    h float8 := 0.05;
    u float8[];       -- grid of the previous look's continuation region
    g float8[];       -- density there times the Simpson weight
    z float8[];
    w float8[];
    c float8;
    cc float8;
    lo float8;
    hi float8;
    e record;
    cn float8;
    m int;
    k int;
    it int;
BEGIN
    PERFORM reco._stat_check(p_looks BETWEEN 1 AND 100, format('looks must be between 1 and 100, got %s', p_looks),
                             'The number of planned analyses, the final one included.');
    PERFORM reco._stat_check_alpha(p_alpha);
    IF p_fractions IS NULL THEN
        t := ARRAY(SELECT i::float8 / p_looks FROM generate_series(1, p_looks) i);
    ELSE
        t := p_fractions;
        PERFORM reco._stat_check(cardinality(t) = p_looks AND array_position(t, NULL) IS NULL
                                 AND t[1] > 0 AND t[p_looks] <= 1
                                 AND NOT EXISTS (SELECT 1 FROM generate_series(2, p_looks) i WHERE t[i] <= t[i - 1]),
                                 format('need %s increasing information fractions in (0, 1], got %s', p_looks, p_fractions),
                                 'The share of the planned users (information) at each look, e.g. {0.2,0.45,0.7,1}.');
    END IF;
    za := -reco.stat_norm_ppf(p_alpha / 4);
    FOR k IN 2 .. p_looks LOOP
        h := least(h, sqrt((t[k] - t[k - 1]) / t[k - 1]) / 10);
    END LOOP;
    FOR k IN 1 .. p_looks LOOP
        look := k;
        info_fraction := t[k];
        -- Lan–DeMets O'Brien–Fleming-type spending on each side, with α/2 per side (as gsDesign's
        -- sfLDOF and ldbounds): α_side(t) = 2 − 2Φ(z_{1−α/4} / √t); both sides: 2 α_side(t)
        alpha_spent := CASE WHEN t[k] >= 1 THEN p_alpha ELSE 4 * reco.stat_norm_cdf(-za / sqrt(t[k])) END;
        alpha_look := alpha_spent - spent_prev;
        spent_prev := alpha_spent;
        IF alpha_look <= 0 THEN
            c := 'Infinity';
        ELSIF k = 1 THEN
            c := -reco.stat_norm_ppf(alpha_look / 2);
        ELSE
            -- solve P(continue until k − 1, |Z_k| ≥ c) = alpha_look: Newton within a bracket
            lo := 0;
            hi := -reco.stat_norm_ppf(alpha_look / 2);   -- unconditional crossing: an upper bound
            c := hi;
            FOR it IN 1 .. 100 LOOP
                e := reco._stat_seq_exit(u, g, t[k - 1], t[k], c);
                IF e.prob > alpha_look THEN lo := c; ELSE hi := c; END IF;
                cn := c - (e.prob - alpha_look) / e.deriv;
                IF NOT (cn > lo AND cn < hi) THEN
                    cn := (lo + hi) / 2;
                END IF;
                EXIT WHEN abs(cn - c) < 1e-11;
                c := cn;
            END LOOP;
            c := cn;
        END IF;
        z_boundary := c;
        nominal_p := 2 * reco.stat_norm_cdf(-c);
        RETURN NEXT;
        IF k < p_looks THEN
            -- the sub-density of Z_k on the continuation region (−c, c), on a Simpson grid
            cc := least(c, cap);
            m := 2 * ceil(cc / h)::int;
            z := ARRAY(SELECT -cc + 2 * cc * j / m FROM generate_series(0, m) j);
            w := ARRAY(SELECT 2 * cc / m / 3 * CASE WHEN j IN (0, m) THEN 1 WHEN j % 2 = 1 THEN 4 ELSE 2 END
                       FROM generate_series(0, m) j);
            IF k = 1 THEN
                g := ARRAY(SELECT wj * exp(-zj * zj / 2) / 2.50662827463100050242
                           FROM unnest(z, w) WITH ORDINALITY AS x(zj, wj, j) ORDER BY j);
            ELSE
                g := ARRAY(
                    SELECT nw.wj * sqrt(t[k] / (t[k] - t[k - 1])) / 2.50662827463100050242
                           * (SELECT sum(o.gi * exp(greatest(-((nw.zj * sqrt(t[k]) - o.ui * sqrt(t[k - 1])) ^ 2)
                                                             / (2 * (t[k] - t[k - 1])), -300)))
                              FROM unnest(u, g) AS o(ui, gi))
                    FROM unnest(z, w) WITH ORDINALITY AS nw(zj, wj, j) ORDER BY nw.j);
            END IF;
            u := z;
        END IF;
    END LOOP;
END $$;
COMMENT ON FUNCTION reco.stat_sequential_boundaries(int, float8, float8[]) IS
$c$two-sided group-sequential efficacy boundaries with Lan–DeMets O'Brien–Fleming-type alpha
spending, α/2 on each side as in R's gsDesign (sfLDOF) and ldbounds: α_side(t) = 2 − 2Φ(z_{1−α/4}/√t),
so α(t) = 2 α_side(t) in all (α at t = 1). Inputs: the number of planned looks K (the final analysis
included), α (default 0.05) and the information fraction of each look (users so far / planned
users; default k/K; K increasing values in (0, 1], all of α is spent at 1). Each boundary solves
P(no crossing before look k, |Z_k| ≥ c_k) = α(t_k) − α(t_{k−1}) under H0 by the Armitage–McPherson–Rowe
recursion (numerical integration on a Simpson grid). One row per look: look, info_fraction,
alpha_spent (cumulative), alpha_look (spent at this look), z_boundary, nominal_p = 2Φ(−z_boundary).
Example: SELECT * FROM reco.stat_sequential_boundaries(5) -- 4.877, 3.357, 2.680, 2.290, 2.031$c$;

CREATE OR REPLACE FUNCTION reco.stat_sequential_test(
    p_z float8, p_look int, p_looks int, p_alpha float8 DEFAULT 0.05, p_fractions float8[] DEFAULT NULL,
    OUT look int, OUT info_fraction float8, OUT alpha_spent float8, OUT z_boundary float8, OUT nominal_p float8,
    OUT stop boolean)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    t float8[];
BEGIN
    PERFORM reco._stat_check(p_looks BETWEEN 1 AND 100, format('looks must be between 1 and 100, got %s', p_looks),
                             'The number of planned analyses, the final one included.');
    PERFORM reco._stat_check(p_look BETWEEN 1 AND p_looks, format('look must be between 1 and %s, got %s', p_looks, p_look),
                             'The analysis being made now: 1 for the first look.');
    PERFORM reco._stat_check(p_fractions IS NULL OR cardinality(p_fractions) = p_looks,
                             format('need %s information fractions, got %s', p_looks, p_fractions),
                             'One per planned look; the later ones may be the planned values.');
    t := coalesce(p_fractions, ARRAY(SELECT i::float8 / p_looks FROM generate_series(1, p_looks) i));
    -- the boundary of look k depends on the looks up to k only
    SELECT b.look, b.info_fraction, b.alpha_spent, b.z_boundary, b.nominal_p
    INTO look, info_fraction, alpha_spent, z_boundary, nominal_p
    FROM reco.stat_sequential_boundaries(p_look, p_alpha, t[1:p_look]) b
    WHERE b.look = p_look;
    stop := abs(p_z) >= z_boundary;
END $$;
COMMENT ON FUNCTION reco.stat_sequential_test(float8, int, int, float8, float8[]) IS
$c$group-sequential monitor for the current look: the O'Brien–Fleming-type boundary of
stat_sequential_boundaries at look p_look of p_looks planned (information fractions default k/K,
or p_fractions with the actual values so far), and stop = |z| ≥ z_boundary (stop for efficacy).
Inputs: the observed z (or Welch t) statistic, the look, the planned looks, α, fractions. Outputs:
look, info_fraction, alpha_spent, z_boundary, nominal_p, stop.
Example: SELECT * FROM reco.stat_sequential_test(2.9, 2, 5) -- boundary 3.357: keep running$c$;

-- ---------------------------------------------------------------------------------------
-- Always-valid inference: the normal-mixture sequential probability ratio test (mSPRT)
-- ---------------------------------------------------------------------------------------

-- With the estimate's z = Δ̂ / se and n units so far, the likelihood ratio of a normal mixture
-- N(0, τ²) over the effect against Δ = 0 is Λ = (1 + r)^(−1/2) exp(z² r / (2 (1 + r))), r = τ² / se²
-- = n ρ². Λ is a martingale under H0, so by Ville's inequality P(Λ ever ≥ 1/α) ≤ α however often it
-- is read: the boundary |z| ≥ √((1 + r)/r · (ln(1 + r) + 2 ln(1/α))) and the confidence sequence
-- Δ̂ ± that × se (Waudby-Smith et al. 2023, eq. 9; GrowthBook's SequentialTwoSidedTTest) hold at
-- every read at once. ρ² = (−2 ln α + ln(1 − 2 ln α)) / N* makes the sequence tightest at N* units
-- (gbstats' sequential_tuning_parameter, default 5000).
CREATE OR REPLACE FUNCTION reco.stat_msprt(p_z float8, p_n float8, p_alpha float8 DEFAULT 0.05,
                                           p_tuning float8 DEFAULT 5000,
                                           OUT z_boundary float8, OUT p_value float8, OUT reject boolean)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    _r float8;
    _l float8;
BEGIN
    PERFORM reco._stat_check_alpha(p_alpha);
    PERFORM reco._stat_check(p_n >= 0 AND p_n < 'Infinity', format('the number of units must be >= 0, got %s', p_n),
                             'Pass the users in both arms so far.');
    PERFORM reco._stat_check(p_tuning > 0 AND p_tuning < 'Infinity',
                             format('the tuning parameter must be positive, got %s', p_tuning),
                             'The number of units at which the confidence sequence is tightest, e.g. the planned users (5000 by default).');
    IF p_n = 0 THEN
        z_boundary := 'Infinity';
        p_value := 1;
        reject := false;
        RETURN;
    END IF;
    _r := p_n * (-2 * ln(p_alpha) + ln(1 - 2 * ln(p_alpha))) / p_tuning;
    z_boundary := sqrt((1 + _r) / _r * (reco._stat_log1p(_r) + 2 * ln(1 / p_alpha)));
    IF p_z IS NOT NULL THEN
        _l := -0.5 * reco._stat_log1p(_r) + p_z * p_z * _r / (2 * (1 + _r));   -- ln Λ
        p_value := CASE WHEN _l <= 0 THEN 1 ELSE exp(greatest(-_l, -700)) END;
        reject := abs(p_z) >= z_boundary;
    END IF;
END $$;
COMMENT ON FUNCTION reco.stat_msprt(float8, float8, float8, float8) IS
$c$always-valid two-sided test (mixture sequential probability ratio test, normal mixture; the confidence
sequence of Waudby-Smith et al. 2023 that GrowthBook ships as its sequential test). Inputs: the observed z (or
Welch t) of the comparison now, the units so far n (both arms), α (default 0.05), the tuning parameter N* (the
units at which the sequence is tightest, default 5000; the experiment's planned users when it has some).
Outputs: z_boundary (a (1−α) confidence sequence is estimate ± z_boundary × se), p_value = min(1, 1/Λ) (the
always-valid p: it may be read at every look), reject = |z| ≥ z_boundary. P(any read rejects | no effect) ≤ α.
Example: SELECT * FROM reco.stat_msprt(2.5, 4000) -- boundary 3.040, p 0.182, reject false$c$;

-- ---------------------------------------------------------------------------------------
-- Intervals that stay in range at low counts
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

-- Quantile of Beta(a, b): bisection on the regularised incomplete beta (in x, then in ln x near 0)
CREATE OR REPLACE FUNCTION reco._stat_beta_ppf(p_a float8, p_b float8, p_q float8)
RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    _lo float8 := -745;   -- ln x
    _hi float8 := 0;
    _mid float8;
BEGIN
    FOR i IN 1 .. 200 LOOP
        _mid := (_lo + _hi) / 2;
        IF reco._stat_ibeta(p_a, p_b, exp(_mid), CASE WHEN _mid > -1e-5 THEN -_mid * (1 + _mid / 2) ELSE 1 - exp(_mid) END) < p_q THEN _lo := _mid; ELSE _hi := _mid; END IF;
        EXIT WHEN _hi - _lo < 1e-13;
    END LOOP;
    RETURN exp((_lo + _hi) / 2);
END $$;
COMMENT ON FUNCTION reco._stat_beta_ppf(float8, float8, float8) IS 'internal: quantile of Beta(a, b) (bisection on ln x)';

CREATE OR REPLACE FUNCTION reco.stat_beta_ratio_interval(
    p_a_a float8, p_b_a float8, p_a_b float8, p_b_b float8, p_alpha float8 DEFAULT 0.05,
    OUT rel_low float8, OUT rel_high float8, OUT method text)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    _z float8;
    _mu float8;
    _sd float8;
    _x float8;
    _sa float8;
    _sb float8;
    _c float8;
BEGIN
    PERFORM reco._stat_check(p_a_a > 0 AND p_b_a > 0 AND p_a_b > 0 AND p_b_b > 0,
                             format('Beta parameters must be positive, got (%s, %s) and (%s, %s)', p_a_a, p_b_a, p_a_b, p_b_b),
                             'Posterior Beta(prior α + conversions, prior β + non-conversions) of arm A, then of arm B.');
    PERFORM reco._stat_check_alpha(p_alpha);
    IF least(p_a_a, p_a_b) < 50 THEN
        -- few conversions: each Beta as a scaled Gamma of the same mean and relative variance (shape
        -- s = α (α + β + 1) / β; s → α for rare events), so p_b / p_a ≈ (m_b / m_a)(s_a / s_b) · G_b / G_a
        -- and G_b / (G_a + G_b) ~ Beta(s_b, s_a): the skew of ln p at small α is kept
        method := 'gamma ratio';
        _sa := p_a_a * (p_a_a + p_b_a + 1) / p_b_a;
        _sb := p_a_b * (p_a_b + p_b_b + 1) / p_b_b;
        _c := (p_a_b / (p_a_b + p_b_b)) / (p_a_a / (p_a_a + p_b_a)) * _sa / _sb;
        _x := reco._stat_beta_ppf(_sb, _sa, p_alpha / 2);
        rel_low := _c * _x / (1 - _x) - 1;
        _x := reco._stat_beta_ppf(_sb, _sa, 1 - p_alpha / 2);
        rel_high := _c * _x / (1 - _x) - 1;
    ELSE
        -- many: gbstats' log-normal approximation, ln p ≈ N(ψ(α) − ψ(α + β), ψ₁(α) − ψ₁(α + β))
        method := 'log-normal';
        _z := -reco.stat_norm_ppf(p_alpha / 2);
        _mu := reco.stat_digamma(p_a_b) - reco.stat_digamma(p_a_b + p_b_b) - reco.stat_digamma(p_a_a) + reco.stat_digamma(p_a_a + p_b_a);
        _sd := sqrt(reco.stat_trigamma(p_a_b) - reco.stat_trigamma(p_a_b + p_b_b) + reco.stat_trigamma(p_a_a) - reco.stat_trigamma(p_a_a + p_b_a));
        rel_low := exp(_mu - _z * _sd) - 1;
        rel_high := exp(_mu + _z * _sd) - 1;
    END IF;
END $$;
COMMENT ON FUNCTION reco.stat_beta_ratio_interval(float8, float8, float8, float8, float8) IS
$c$1−α credible interval of p_b / p_a − 1 for independent posteriors p_a ~ Beta(α_a, β_a), p_b ~ Beta(α_b, β_b).
With fewer than 50 conversions in an arm (α < 50): the gamma-ratio form, each Beta as a scaled Gamma of the same
mean and relative variance (shape s = α(α+β+1)/β), so p_b/p_a ≈ (m_b/m_a)(s_a/s_b) · G_b/G_a with G_b/(G_a+G_b) ~
Beta(s_b, s_a) (exact as p → 0; within ~0.3 points of the tails' 2.5 % by numerical integration up to p ≈ 0.5 with
20+ users; it keeps the skew the log-normal loses, so the interval agrees with P(better)); otherwise gbstats'
log-normal approximation. method names which. Example:
SELECT * FROM reco.stat_beta_ratio_interval(1, 1035, 6, 962) -- [+26.4 %, +25060 %] (0/1034 vs 5/966, P(better) 98.7 %)$c$;

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
