-- Statistics for looking more than once: group-sequential boundaries and tests, and always-valid
-- inference (mSPRT).
-- Conventions, and the list of every statistics function: sql/073_stats_distributions.sql.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

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
