-- Statistics: Bayesian Beta-Bernoulli (P(B > A), the posterior of the lift, credible intervals of the
-- ratio at low counts).
-- Conventions, and the list of every statistics function: sql/073_stats_distributions.sql.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

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
-- The ratio of two Beta posteriors at low counts
-- ---------------------------------------------------------------------------------------

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
