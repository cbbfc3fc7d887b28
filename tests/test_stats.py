"""The A/B-test statistics of sql/073-078_stats_*.sql, checked against scipy, GrowthBook's gbstats test
vectors, R's gsDesign boundaries and simulations drawn in SQL."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import psycopg
import pytest
from scipy import integrate, special, stats

ROOT = Path(__file__).resolve().parent.parent


def vec(conn, expr: str, *arrays) -> list[float]:
    """Evaluate expr over the elements of equally long arrays (bound as a, b, c, ...), in order."""
    names = "abcdefgh"[: len(arrays)]
    params = ", ".join("%s::float8[]" for _ in arrays)
    sql = (f"SELECT array_agg(({expr})::float8 ORDER BY i) AS v "
           f"FROM unnest({params}) WITH ORDINALITY AS u({', '.join(names)}, i)")
    return conn.execute(sql, [list(map(float, a)) for a in arrays]).fetchone()["v"]


def close(got, want, rel=1e-9, abs_=0.0):
    for g, w in zip(got, want, strict=True):
        if 0 <= w < 1e-290:  # below ~1e-300 the functions return 0 (PostgreSQL raises on underflow)
            assert g < 1e-290
        else:
            assert g == pytest.approx(w, rel=rel, abs=abs_), (g, w)


def row(conn, sql: str, params=()) -> dict:
    return conn.execute(sql, params).fetchone()


# ---------------------------------------------------------------------------------------------
# Distributions
# ---------------------------------------------------------------------------------------------


def test_normal_cdf_and_quantile(conn):
    x = np.concatenate([np.linspace(-37.4, 8.5, 467), [-0.67448975, 0.0, 1e-20, 5.656854249492380195]])
    close(vec(conn, "reco.stat_norm_cdf(a)", x), stats.norm.cdf(x), rel=1e-12)
    p = np.concatenate([np.logspace(-300, -1, 120), np.linspace(0.02, 0.98, 97), 1 - np.logspace(-15, -2, 40)])
    close(vec(conn, "reco.stat_norm_ppf(a)", p), stats.norm.ppf(p), rel=1e-12)
    r = row(conn, "SELECT reco.stat_norm_ppf(0) AS lo, reco.stat_norm_ppf(1) AS hi, reco.stat_norm_ppf(0.5) AS mid")
    assert (r["lo"], r["hi"], r["mid"]) == (-math.inf, math.inf, 0)


def test_student_t(conn):
    dfs = [1, 1.5, 2, 3, 5.5, 10, 30, 100, 1000, 5841.742, 9999, 10000, 1e5, 1e7, 1e10]
    ts = [-40, -8, -3, -1.96, -0.5, 0, 0.3, 1, 1.73, 2.5, 6, 25]
    d, t = zip(*[(df, tt) for df in dfs for tt in ts], strict=True)
    got = vec(conn, "reco.stat_t_cdf(b, a)", d, t)
    want = stats.t.cdf(t, d)
    close(got, want, rel=1e-9)
    # the tails themselves, relative: P(T ≤ −|t|)
    close(vec(conn, "reco.stat_t_cdf(-abs(b), a)", d, t), stats.t.sf(np.abs(t), d), rel=1e-9)
    # quantiles: scipy's t.ppf itself is only good to ~1e-11, so also the round trip through the cdf
    ps = [1e-12, 1e-6, 0.001, 0.025, 0.3, 0.5, 0.7, 0.975, 0.999999]
    d, p = zip(*[(df, pp) for df in dfs for pp in ps], strict=True)
    close(vec(conn, "reco.stat_t_ppf(b, a)", d, p), stats.t.ppf(p, d), rel=1e-8, abs_=1e-12)
    close(vec(conn, "reco.stat_t_cdf(reco.stat_t_ppf(b, a), a)", d, p), p, rel=1e-10)
    assert row(conn, "SELECT reco.stat_t_ppf(0.975, 10) AS q")["q"] == pytest.approx(2.2281388519649385, rel=1e-10)


def test_incomplete_beta_and_gamma(conn):
    cases = [(0.5, 0.5, 0.3), (2, 3, 0.4), (10, 0.5, 0.999), (0.5, 5000, 1e-4), (3500, 0.5, 0.9995),
             (1e3, 1e3, 0.49), (1e6, 1e6, 0.5005), (30, 70, 0.05), (1, 1, 0.77), (250.5, 3.2, 0.97)]
    a, b, x = zip(*cases, strict=True)
    close(vec(conn, "reco.stat_beta_inc(a, b, c)", a, b, x), special.betainc(a, b, x), rel=1e-9)
    gcases = [(0.5, 0.01), (0.5, 9.09), (1, 1), (3, 2), (10, 3), (10, 30), (100, 90), (2.5, 40), (1000, 1100)]
    a, x = zip(*gcases, strict=True)
    close(vec(conn, "reco.stat_gamma_inc(a, b)", a, x), special.gammainc(a, x), rel=1e-9)
    chi = [(18.181818181818183, 1), (3.841458820694124, 1), (0.5, 3), (25, 4), (200, 150), (1e-4, 2), (60, 3)]
    x, df = zip(*chi, strict=True)
    close(vec(conn, "reco.stat_chi2_sf(a, b)", x, df), stats.chi2.sf(x, df), rel=1e-9)


def test_gamma_functions(conn):
    x = [1e-8, 0.1, 0.5, 1, 1.5, 2, 3.7, 9.99, 10, 50.5, 1e3, 1e6, 1e10]
    close(vec(conn, "reco.stat_lgamma(a)", x), special.gammaln(x), rel=1e-13, abs_=1e-14)
    close(vec(conn, "reco.stat_digamma(a)", x), special.digamma(x), rel=1e-12, abs_=1e-14)
    close(vec(conn, "reco.stat_trigamma(a)", x), special.polygamma(1, x), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Frequentist tests
# ---------------------------------------------------------------------------------------------


def test_mean_test_gbstats_vector(conn):
    """gbstats tests/frequentist/test_tests.py: A = (3407, mean 0.41, sd 3.9), B = (3461, 0.70, 6.2)."""
    r = row(conn, "SELECT * FROM reco.stat_mean_test(3407, 1396.87, 52377.9767, 3461, 2422.7, 134698.29)")
    assert round(r["lift"], 5) == 0.29
    assert [round(r["lift_ci_low"], 5), round(r["lift_ci_high"], 5)] == [0.04538, 0.53462]
    assert round(r["p_value"], 5) == 0.02016
    assert round(r["rel_lift"], 5) == 0.70732
    assert [round(r["rel_ci_low"], 5), round(r["rel_ci_high"], 5)] == [-0.03526, 1.44989]
    assert round(r["rel_p_value"], 5) == 0.06191
    ref = stats.ttest_ind_from_stats(0.7, 6.2, 3461, 0.41, 3.9, 3407, equal_var=False)
    assert r["t"] == pytest.approx(ref.statistic, rel=1e-9)
    assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mean_test_against_scipy(conn, seed):
    rng = np.random.default_rng(seed)
    a = rng.lognormal(0, 1, rng.integers(5, 400))
    b = rng.lognormal(0.1, 1.3, rng.integers(5, 400))
    r = row(conn, "SELECT * FROM reco.stat_mean_test(%s, %s, %s, %s, %s, %s, 0.1)",
            (len(a), a.sum(), (a * a).sum(), len(b), b.sum(), (b * b).sum()))
    ref = stats.ttest_ind(b, a, equal_var=False)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.95, df) * math.sqrt(va + vb)
    assert r["t"] == pytest.approx(ref.statistic, rel=1e-9)
    assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-8)
    assert r["df"] == pytest.approx(df, rel=1e-9)
    assert r["lift"] == pytest.approx(b.mean() - a.mean(), rel=1e-9)
    assert r["lift_ci_low"] == pytest.approx(b.mean() - a.mean() - half, rel=1e-8)
    # relative lift: delta method, same df
    se_rel = math.sqrt(b.var(ddof=1) / (a.mean() ** 2 * len(b))
                       + a.var(ddof=1) * b.mean() ** 2 / (a.mean() ** 4 * len(a)))
    rel = b.mean() / a.mean() - 1
    assert r["rel_lift"] == pytest.approx(rel, rel=1e-9)
    assert r["rel_ci_high"] == pytest.approx(rel + stats.t.ppf(0.95, df) * se_rel, rel=1e-8)
    assert r["rel_p_value"] == pytest.approx(2 * stats.t.sf(abs(rel / se_rel), df), rel=1e-8)


def test_mean_test_degenerate(conn):
    r = row(conn, "SELECT * FROM reco.stat_mean_test(1, 5, 25, 10, 20, 50)")
    assert r["mean_a"] == 5 and r["mean_b"] == 2 and r["p_value"] is None and r["df"] is None
    r = row(conn, "SELECT * FROM reco.stat_mean_test(3, 6, 12, 4, 8, 16)")  # no variance at all
    assert r["lift"] == 0 and r["t"] is None and r["p_value"] is None


def test_proportion_test(conn):
    for n_a, x_a, n_b, x_b in [(1000, 50, 1000, 70), (2213, 111, 2213, 155), (500, 0, 700, 3), (12, 6, 30, 29)]:
        r = row(conn, "SELECT * FROM reco.stat_proportion_test(%s, %s, %s, %s)", (n_a, x_a, n_b, x_b))
        pa, pb = x_a / n_a, x_b / n_b
        pool = (x_a + x_b) / (n_a + n_b)
        z = (pb - pa) / math.sqrt(pool * (1 - pool) * (1 / n_a + 1 / n_b))
        se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
        zc = stats.norm.ppf(0.975)
        assert r["z"] == pytest.approx(z, rel=1e-12)
        assert r["p_value"] == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-10)
        assert r["lift_ci_low"] == pytest.approx(pb - pa - zc * se, rel=1e-10, abs=1e-15)
        assert r["lift_ci_high"] == pytest.approx(pb - pa + zc * se, rel=1e-10)
        if pa > 0:
            se_rel = math.sqrt(pb * (1 - pb) / (pa**2 * n_b) + pa * (1 - pa) * pb**2 / (pa**4 * n_a))
            assert r["rel_lift"] == pytest.approx(pb / pa - 1, rel=1e-12)
            assert r["rel_ci_low"] == pytest.approx(pb / pa - 1 - zc * se_rel, rel=1e-10)
        else:
            assert r["rel_lift"] is None
    r = row(conn, "SELECT * FROM reco.stat_proportion_test(100, 0, 100, 0)")
    assert r["lift"] == 0 and r["z"] is None and r["p_value"] is None
    r = row(conn, "SELECT * FROM reco.stat_proportion_test(0, 0, 100, 3)")
    assert r["rate_a"] is None and r["rate_b"] == 0.03 and r["p_value"] is None


def test_proportion_intervals_stay_in_range(conn):
    """Newcombe's hybrid score interval (his 1998 paper, Table II, method 10) and the log-ratio interval."""
    for (n_a, x_a, n_b, x_b), (low, high) in [((80, 48, 70, 56), (0.0524, 0.3339)), ((10, 3, 10, 9), (0.1705, 0.8090))]:
        r = row(conn, "SELECT * FROM reco.stat_proportion_intervals(%s, %s, %s, %s)", (n_a, x_a, n_b, x_b))
        assert (round(r["lift_low"], 4), round(r["lift_high"], 4)) == (low, high)
    for n_a, x_a, n_b, x_b in [(1030, 2, 970, 9), (1000, 50, 1000, 70), (1034, 0, 966, 5), (12, 12, 30, 29)]:
        r = row(conn, "SELECT * FROM reco.stat_proportion_intervals(%s, %s, %s, %s)", (n_a, x_a, n_b, x_b))
        fix = 0.5 if 0 in (x_a, x_b) else 0
        xa, xb, na, nb = x_a + fix, x_b + fix, n_a + fix, n_b + fix
        se = math.sqrt(1 / xb - 1 / nb + 1 / xa - 1 / na)
        ratio = (xb / nb) / (xa / na)
        assert r["rel_low"] == pytest.approx(ratio * math.exp(-stats.norm.ppf(0.975) * se) - 1, rel=1e-10)
        assert r["rel_high"] == pytest.approx(ratio * math.exp(stats.norm.ppf(0.975) * se) - 1, rel=1e-10)
        assert -1 < r["rel_low"] < r["rel_high"] and -1 <= r["lift_low"] < r["lift_high"] <= 1
    # issue 23: 2/1030 vs 9/970 is significant (p 0.027) and its Wald relative interval went below −100 %
    wald = row(conn, "SELECT * FROM reco.stat_proportion_test(1030, 2, 970, 9)")
    new = row(conn, "SELECT * FROM reco.stat_proportion_intervals(1030, 2, 970, 9)")
    assert wald["p_value"] < 0.05 and wald["rel_ci_low"] < -1
    assert 0 < new["rel_low"] < wald["rel_lift"] < new["rel_high"] and new["lift_low"] > 0


@pytest.mark.parametrize("counts", [(1034, 0, 966, 5), (1000, 3, 1000, 9), (200, 20, 210, 31)])
def test_beta_ratio_credible_interval(conn, counts):
    """The credible interval of p_B / p_A − 1 against numerical integration of the posteriors, and in
    agreement with P(better): 0/1034 vs 5/966 (P(better) 98.7 %) no longer shows [−25.6 %, +14,719 %]."""
    n_a, x_a, n_b, x_b = counts
    aa, ba, ab, bb = 1 + x_a, 1 + n_a - x_a, 1 + x_b, 1 + n_b - x_b
    r = row(conn, "SELECT * FROM reco.stat_beta_ratio_interval(%s, %s, %s, %s)", (aa, ba, ab, bb))
    assert r["method"] == "gamma ratio"

    def below(ratio: float) -> float:  # P(p_B / p_A ≤ ratio)
        return integrate.quad(lambda a: stats.beta.pdf(a, aa, ba) * stats.beta.cdf(ratio * a, ab, bb),
                              0, 1, limit=200, points=[aa / (aa + ba)])[0]

    assert below(1 + r["rel_low"]) == pytest.approx(0.025, abs=0.003)
    assert below(1 + r["rel_high"]) == pytest.approx(0.975, abs=0.003)
    p_better = row(conn, "SELECT p_b_better FROM reco.stat_bayes_proportion(%s, %s, %s, %s)", counts)["p_b_better"]
    assert (r["rel_low"] > 0) == (p_better > 0.975)
    many = row(conn, "SELECT * FROM reco.stat_beta_ratio_interval(500, 4500, 560, 4440)")
    assert many["method"] == "log-normal" and many["rel_low"] < 0.12 < many["rel_high"]


def test_ratio_metric_delta_method(conn):
    rng = np.random.default_rng(7)
    results = []
    for lam in (3.0, 3.6):
        den = rng.poisson(lam, 4000) + 1            # exposures per user
        num = rng.binomial(den, 0.12 if lam == 3.0 else 0.13)   # clicks per user
        r = row(conn, "SELECT * FROM reco.stat_ratio_moments(%s, %s, %s, %s, %s, %s)",
                (len(num), float(num.sum()), float((num * num).sum()), float(den.sum()),
                 float((den * den).sum()), float((num * den).sum())))
        ratio = num.sum() / den.sum()
        # delta method as the linearised per-user residual: (num − r·den) / mean(den)
        lin = (num - ratio * den) / den.mean()
        assert r["mean"] == pytest.approx(ratio, rel=1e-12)
        assert r["variance"] == pytest.approx(lin.var(ddof=1), rel=1e-9)
        assert r["covariance"] == pytest.approx(np.cov(num, den, ddof=1)[0, 1], rel=1e-9)
        results.append((len(num), r["mean"], r["variance"]))
    (n_a, m_a, v_a), (n_b, m_b, v_b) = results
    t = row(conn, "SELECT * FROM reco.stat_mean_test_moments(%s, %s, %s, %s, %s, %s)", (n_a, m_a, v_a, n_b, m_b, v_b))
    ref = stats.ttest_ind_from_stats(m_b, math.sqrt(v_b), n_b, m_a, math.sqrt(v_a), n_a, equal_var=False)
    assert t["p_value"] == pytest.approx(ref.pvalue, rel=1e-8)


def test_cuped(conn):
    rng = np.random.default_rng(11)
    arms = []
    for n, effect in ((3000, 0.0), (3100, 0.15)):
        x = rng.normal(10, 3, n)
        y = 10 + effect + 0.8 * (x - 10) + rng.normal(0, 1.8, n)
        arms.append((x, y))
    args = []
    for x, y in arms:
        args += [len(y), y.sum(), (y * y).sum(), x.sum(), (x * x).sum(), (x * y).sum()]
    r = row(conn, "SELECT * FROM reco.stat_cuped_test(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", args)
    xs = np.concatenate([arms[0][0], arms[1][0]])
    ys = np.concatenate([arms[0][1], arms[1][1]])
    theta = np.cov(ys, xs, ddof=1)[0, 1] / xs.var(ddof=1)
    assert r["theta"] == pytest.approx(theta, rel=1e-9)
    adj = [y - theta * (x - xs.mean()) for x, y in arms]
    assert r["adj_mean_a"] == pytest.approx(adj[0].mean(), rel=1e-9)
    assert r["adj_var_b"] == pytest.approx(adj[1].var(ddof=1), rel=1e-8)
    ref = stats.ttest_ind(adj[1], adj[0], equal_var=False)
    assert r["t"] == pytest.approx(ref.statistic, rel=1e-8)
    assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-6)
    raw = arms[0][1].var(ddof=1) / 3000 + arms[1][1].var(ddof=1) / 3100
    assert r["variance_reduction"] == pytest.approx(1 - (adj[0].var(ddof=1) / 3000 + adj[1].var(ddof=1) / 3100) / raw,
                                                    rel=1e-8)
    assert r["variance_reduction"] > 0.6  # corr(x, y) = 0.8: 1 − ρ² of the variance is gone
    plain = stats.ttest_ind(arms[1][1], arms[0][1], equal_var=False)
    assert r["p_value"] < plain.pvalue


# ---------------------------------------------------------------------------------------------
# Bayesian
# ---------------------------------------------------------------------------------------------


def _beta_reference(aa, ba, ab, bb):
    """P(pB > pA) and the expected losses by numerical integration."""
    fa, fb = stats.beta(aa, ba), stats.beta(ab, bb)
    lo, hi = min(fa.ppf(1e-12), fb.ppf(1e-12)), max(fa.isf(1e-12), fb.isf(1e-12))
    pts = np.linspace(lo, hi, 9)[1:-1]
    p_b = integrate.quad(lambda x: fb.pdf(x) * fa.cdf(x), lo, hi, points=pts, epsabs=1e-13, epsrel=1e-11, limit=200)[0]
    # E[max(pA − pB, 0)] = ∫ f_A(x) (x F_B(x) − m_B F_{B+1}(x)) dx
    mb = ab / (ab + bb)
    loss_b = integrate.quad(lambda x: fa.pdf(x) * (x * fb.cdf(x) - mb * stats.beta.cdf(x, ab + 1, bb)),
                            lo, hi, points=pts, epsabs=1e-14, epsrel=1e-10, limit=200)[0]
    ma = aa / (aa + ba)
    loss_a = loss_b + mb - ma
    return p_b, loss_b, loss_a


def test_bayes_gbstats_vector(conn):
    """gbstats tests/bayesian/test_tests.py: 49/100 vs 51/100, prior Beta(1, 1)."""
    r = row(conn, "SELECT * FROM reco.stat_bayes_proportion(100, 49, 100, 51)")
    assert r["method"] == "exact"
    assert round(r["rel_lift"], 4) == 0.0404
    assert [round(r["rel_ci_low"], 5), round(r["rel_ci_high"], 5)] == [-0.21099, 0.37189]
    assert [round(r["loss_a"], 5), round(r["loss_b"], 5)] == [0.03872, 0.01912]   # gbstats' risk
    # gbstats' chance_to_win 0.61052 is the log-normal approximation; this is the exact value
    p_b, loss_b, loss_a = _beta_reference(50, 52, 52, 50)
    assert r["p_b_better"] == pytest.approx(p_b, rel=1e-9)
    assert r["p_b_better"] == pytest.approx(0.61052, abs=5e-4)


@pytest.mark.parametrize("counts", [(1000, 40, 1000, 55), (250, 200, 260, 190), (30, 0, 40, 2),
                                    (5000, 900, 5200, 1010)])
def test_bayes_against_integration(conn, counts):
    n_a, x_a, n_b, x_b = counts
    r = row(conn, "SELECT * FROM reco.stat_bayes_proportion(%s, %s, %s, %s)", counts)
    aa, ba, ab, bb = 1 + x_a, 1 + n_a - x_a, 1 + x_b, 1 + n_b - x_b
    p_b, loss_b, loss_a = _beta_reference(aa, ba, ab, bb)
    assert r["method"] == "exact"
    assert r["p_b_better"] == pytest.approx(p_b, rel=1e-8, abs=1e-12)
    assert r["loss_b"] == pytest.approx(loss_b, rel=1e-6, abs=1e-12)
    assert r["loss_a"] == pytest.approx(loss_a, rel=1e-6, abs=1e-12)
    mu = special.digamma(ab) - special.digamma(ab + bb) - special.digamma(aa) + special.digamma(aa + ba)
    sd = math.sqrt(special.polygamma(1, ab) - special.polygamma(1, ab + bb) + special.polygamma(1, aa)
                   - special.polygamma(1, aa + ba))
    assert r["rel_ci_low"] == pytest.approx(math.exp(mu - stats.norm.ppf(0.975) * sd) - 1, rel=1e-9)
    # the normal approximation (what very large counts get) is close
    approx = row(conn, "SELECT * FROM reco.stat_bayes_proportion(%s, %s, %s, %s, p_max_terms => 0)", counts)
    assert approx["method"] == "normal"
    if min(x_a, x_b) >= 50:
        assert approx["p_b_better"] == pytest.approx(p_b, abs=5e-3)
        assert approx["loss_b"] == pytest.approx(loss_b, rel=0.05, abs=1e-5)


def test_beta_prob_greater_symmetries(conn):
    # non-integer parameters on three sides: the sum runs over the integer one
    for a1, b1, a2, b2 in [(7, 3.5, 2.5, 4.5), (2.5, 6, 3.5, 1.5), (2.5, 3.5, 4, 1.5), (3.5, 2.5, 1.5, 5)]:
        got = row(conn, "SELECT reco.stat_beta_prob_greater(%s, %s, %s, %s) AS p", (a1, b1, a2, b2))["p"]
        def f(x, a1=a1, b1=b1, a2=a2, b2=b2):
            return stats.beta.pdf(x, a1, b1) * stats.beta.cdf(x, a2, b2)
        want = integrate.quad(f, 0, 1, epsabs=1e-13, epsrel=1e-11)[0]
        assert got == pytest.approx(want, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# SRM, sample size, multiple comparisons
# ---------------------------------------------------------------------------------------------


def test_srm(conn):
    r = row(conn, "SELECT * FROM reco.stat_srm(ARRAY[1000, 1200], ARRAY[0.5, 0.5])")
    assert r["chi2"] == pytest.approx(18.181818181818, rel=1e-12) and r["df"] == 1
    assert r["p_value"] == pytest.approx(0.0000201, abs=5e-8)
    assert r["p_value"] == pytest.approx(stats.chisquare([1000, 1200]).pvalue, rel=1e-10)
    assert r["mismatch"] is True
    obs, w = [5050, 2480, 2590], [0.5, 0.25, 0.25]
    r = row(conn, "SELECT * FROM reco.stat_srm(%s, %s)", (obs, w))
    ref = stats.chisquare(obs, np.array(w) * sum(obs))
    assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-10) and r["mismatch"] is False
    r = row(conn, "SELECT * FROM reco.stat_srm(ARRAY[1000, 1200])")          # default weights: equal
    assert r["mismatch"] is True
    r = row(conn, "SELECT * FROM reco.stat_srm(ARRAY[1000, 1200], NULL, 1e-6)")
    assert r["mismatch"] is False
    r = row(conn, "SELECT * FROM reco.stat_srm(ARRAY[0, 0])")
    assert r["p_value"] == 1 and r["mismatch"] is False


def test_sample_size(conn):
    r = row(conn, "SELECT * FROM reco.stat_sample_size_arms(0.05, 0.02)")
    assert (r["n_a"], r["n_b"], r["total"]) == (2213, 2213, 4426)
    assert row(conn, "SELECT reco.stat_sample_size(0.05, 0.02) AS n")["n"] == 2213
    assert row(conn, "SELECT reco.stat_sample_size(0.05, 0.02, p_power => 0.9) AS n")["n"] == 2962
    assert row(conn, "SELECT reco.stat_sample_size(0.05, 0.4, true) AS n")["n"] == 2213
    assert row(conn, "SELECT reco.stat_sample_size(0.05, 0.4, true, 0.05, 0.9) AS n")["n"] == 2962
    # unequal arms: the power actually reached (normal approximation) is the one asked for
    for ratio in (0.5, 2.0, 3.0):
        r = row(conn, "SELECT * FROM reco.stat_sample_size_arms(0.1, -0.02, false, 0.05, 0.8, %s)", (ratio,))
        na, nb = r["n_a"], r["n_b"]
        assert abs(nb - ratio * na) <= ratio + 1

        def power(na, nb, pa=0.1, pb=0.08):
            pbar = (na * pa + nb * pb) / (na + nb)
            se0 = math.sqrt(pbar * (1 - pbar) * (1 / na + 1 / nb))
            se1 = math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
            return stats.norm.cdf((abs(pb - pa) - stats.norm.ppf(0.975) * se0) / se1)

        assert 0.8 <= power(na, nb) < 0.802
        assert power(na - 1, nb - math.ceil(ratio)) < 0.8


def _holm(p):
    p = np.asarray(p, float)
    m, order = len(p), np.argsort(p, kind="stable")
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order]).clip(max=1)
    out = np.empty(m)
    out[order] = adj
    return out


def _bh(p):
    p = np.asarray(p, float)
    m, order = len(p), np.argsort(p, kind="stable")
    adj = np.minimum.accumulate((m * p[order] / np.arange(1, m + 1))[::-1])[::-1].clip(max=1)
    out = np.empty(m)
    out[order] = adj
    return out


def test_p_adjust(conn):
    holm = row(conn, "SELECT reco.stat_p_adjust('{.01,.04,.03,.005,.55,.6}') AS p")["p"]
    # input order; sorted ascending it is the issue's [.03, .05, .12, .12, 1, 1]
    close(holm, [0.05, 0.12, 0.12, 0.03, 1, 1], rel=1e-12)
    assert sorted(holm) == pytest.approx([0.03, 0.05, 0.12, 0.12, 1, 1])
    bh = row(conn, "SELECT reco.stat_p_adjust('{.898,.138,.007,.964,.538,.006,.138}', 'bh') AS p")["p"]
    close(bh, [0.964, 0.2415, 0.0245, 0.964, 0.7532, 0.0245, 0.2415], rel=1e-12)
    assert sorted(bh, reverse=True) == pytest.approx([0.964, 0.964, 0.7532, 0.2415, 0.2415, 0.0245, 0.0245])
    rng = np.random.default_rng(5)
    for _ in range(5):
        p = np.round(rng.beta(0.5, 2, rng.integers(2, 30)), 3)   # ties included
        close(row(conn, "SELECT reco.stat_p_adjust(%s, 'holm') AS p", (list(p),))["p"], _holm(p), rel=1e-12)
        close(row(conn, "SELECT reco.stat_p_adjust(%s, 'BH') AS p", (list(p),))["p"], _bh(p), rel=1e-12)
    r = row(conn, "SELECT reco.stat_p_adjust('{0.01,NULL,0.02}', 'bonferroni') AS p")["p"]
    assert r == [0.02, None, 0.04]
    assert row(conn, "SELECT reco.stat_p_adjust('{0.01,NULL,0.04}') AS p")["p"] == [0.02, None, 0.04]


# ---------------------------------------------------------------------------------------------
# Group-sequential
# ---------------------------------------------------------------------------------------------


def _crossing(bounds, t):
    """P(|Z_k| ≥ c_k for some k) under H0, Z_k = B(t_k)/√t_k, by scipy's multivariate normal."""
    t = np.asarray(t, float)
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    c = np.asarray(bounds, float)
    mvn = stats.multivariate_normal(np.zeros(len(t)), cov, abseps=1e-8, releps=1e-8, maxpts=2_000_000, seed=3)
    return 1 - mvn.cdf(c, lower_limit=-c)


def test_sequential_boundaries(conn):
    rows = conn.execute("SELECT * FROM reco.stat_sequential_boundaries(5) ORDER BY look").fetchall()
    z = [r["z_boundary"] for r in rows]
    # R gsDesign (test.type = 2, sfLDOF, α = 0.025 per side) and ldbounds: 4.8769 3.3569 2.6803 2.2898 2.0310
    close(z, [4.8769, 3.3569, 2.6803, 2.2898, 2.0310], rel=0, abs_=2e-4)
    assert rows[-1]["alpha_spent"] == 0.05
    # the overall type-I error, and what is spent by each look, independently of the recursion
    for k in (2, 3, 5):
        t = [i / 5 for i in range(1, k + 1)]
        assert _crossing(z[:k], t) == pytest.approx(rows[k - 1]["alpha_spent"], rel=1e-5)
    assert _crossing(z, [0.2, 0.4, 0.6, 0.8, 1.0]) == pytest.approx(0.05, abs=1e-6)
    # a single look is the fixed-horizon test
    assert row(conn, "SELECT z_boundary FROM reco.stat_sequential_boundaries(1)")["z_boundary"] == pytest.approx(
        stats.norm.ppf(0.975), rel=1e-12)
    # unequal, actual information fractions
    t = [0.1, 0.3, 0.65, 1.0]
    rows = conn.execute("SELECT * FROM reco.stat_sequential_boundaries(4, 0.05, %s) ORDER BY look", (t,)).fetchall()
    zc = stats.norm.ppf(1 - 0.05 / 4)
    for r, tk in zip(rows[:-1], t[:-1], strict=True):
        assert r["alpha_spent"] == pytest.approx(4 * stats.norm.sf(zc / math.sqrt(tk)), rel=1e-12)
    assert _crossing([r["z_boundary"] for r in rows], t) == pytest.approx(0.05, abs=2e-6)
    # α = 0.01, 3 looks
    rows = conn.execute("SELECT * FROM reco.stat_sequential_boundaries(3, 0.01) ORDER BY look").fetchall()
    assert _crossing([r["z_boundary"] for r in rows], [1 / 3, 2 / 3, 1]) == pytest.approx(0.01, abs=1e-6)


def test_sequential_monitor(conn):
    r = row(conn, "SELECT * FROM reco.stat_sequential_test(2.9, 2, 5)")
    assert r["look"] == 2 and r["z_boundary"] == pytest.approx(3.357, abs=1e-3) and r["stop"] is False
    r = row(conn, "SELECT * FROM reco.stat_sequential_test(-3.4, 2, 5)")
    assert r["stop"] is True
    r = row(conn, "SELECT * FROM reco.stat_sequential_test(2.05, 5, 5)")
    assert r["z_boundary"] == pytest.approx(2.031, abs=1e-3) and r["stop"] is True
    # actual fractions: the boundary of look 2 depends on looks 1 and 2 only
    a = row(conn, "SELECT * FROM reco.stat_sequential_test(1, 2, 4, 0.05, '{0.3,0.55,0.8,1}')")
    b = row(conn, "SELECT * FROM reco.stat_sequential_boundaries(2, 0.05, '{0.3,0.55}') WHERE look = 2")
    assert a["z_boundary"] == pytest.approx(b["z_boundary"], rel=1e-12) and a["info_fraction"] == 0.55


# ---------------------------------------------------------------------------------------------
# Errors, documentation
# ---------------------------------------------------------------------------------------------


BAD_INPUT = [
    "SELECT * FROM reco.stat_proportion_test(-5, 0, 10, 1)",
    "SELECT * FROM reco.stat_proportion_test(10, 11, 10, 1)",
    "SELECT * FROM reco.stat_proportion_test(10, 1, 10, 1, 1.5)",
    "SELECT * FROM reco.stat_mean_test(10, 5, 1, 10, 5, 10)",            # Σx² < (Σx)²/n
    "SELECT * FROM reco.stat_mean_test(-1, 5, 10, 10, 5, 10)",
    "SELECT * FROM reco.stat_mean_test_moments(10, 1, -2, 10, 1, 1)",
    "SELECT * FROM reco.stat_mean_test_moments(10, 1, 2, 10, 1, 1, 0)",
    "SELECT * FROM reco.stat_bayes_proportion(10, 1, 10, 2, 0.05, 0, 1)",
    "SELECT * FROM reco.stat_srm(ARRAY[10, 12], ARRAY[0.5])",
    "SELECT * FROM reco.stat_srm(ARRAY[10, -12])",
    "SELECT * FROM reco.stat_srm(ARRAY[10, 12], ARRAY[0.5, 0])",
    "SELECT * FROM reco.stat_srm(ARRAY[10])",
    "SELECT reco.stat_sample_size(0.05, 0.02, false, 0.05, 1.2)",
    "SELECT reco.stat_sample_size(1.05, 0.02)",
    "SELECT reco.stat_sample_size(0.05, 0.98)",
    "SELECT * FROM reco.stat_sample_size_arms(0.05, 0.02, false, 0.05, 0.8, -1)",
    "SELECT reco.stat_p_adjust('{0.1,1.2}')",
    "SELECT reco.stat_p_adjust('{0.1,0.2}', 'sidak')",
    "SELECT * FROM reco.stat_sequential_boundaries(0)",
    "SELECT * FROM reco.stat_sequential_boundaries(3, 0.05, '{0.5,0.4,1}')",
    "SELECT * FROM reco.stat_sequential_test(1.0, 6, 5)",
    "SELECT reco.stat_norm_ppf(1.5)",
    "SELECT reco.stat_t_cdf(1, 0)",
    "SELECT reco.stat_t_ppf(0.5, -3)",
    "SELECT reco.stat_beta_inc(1, 1, 2)",
    "SELECT reco.stat_chi2_sf(1, 0)",
    "SELECT * FROM reco.stat_simulate(10, 100, 0.1, 0, 1, 2)",          # seed outside [−1, 1]
    "SELECT * FROM reco.stat_simulate(10, 100, 0.1, 0, 1, 0, 'revenue')",
    "SELECT * FROM reco.stat_simulate(10, 100, 0.6, 1.0)",              # B's rate 1.2
]


def test_bad_input(conn):
    """Input no data can have raises invalid_parameter_value (22023) with a hint."""
    for sql in BAD_INPUT:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
            conn.execute(sql)
        assert e.value.diag.sqlstate == "22023", sql
        assert e.value.diag.message_hint, sql


def test_documented_immutable_and_rerunnable(conn):
    fns = conn.execute("""
        SELECT p.oid::regprocedure::text AS sig, p.proname, p.provolatile, p.proparallel,
               obj_description(p.oid, 'pg_proc') AS doc
        FROM pg_proc p WHERE p.pronamespace = 'reco'::regnamespace AND p.proname ~ '^_?stat_'""").fetchall()
    public = [f for f in fns if f["proname"].startswith("stat_")]
    assert len(public) >= 20
    for f in fns:
        assert f["doc"], f"no COMMENT ON FUNCTION {f['sig']}"
        if f["proname"] not in ("stat_simulate", "_stat_check", "_stat_check_alpha", "_stat_check_count"):
            assert (f["provolatile"], f["proparallel"]) == ("i", "s"), f["sig"]
    # reco migrate re-runs the files whole
    for path in sorted((ROOT / "sql").glob("07[3-8]_stats_*.sql")):
        conn.execute(path.read_text())


# ---------------------------------------------------------------------------------------------
# Simulation
# ---------------------------------------------------------------------------------------------


def test_simulated_aa_tests(conn):
    """1,000 A/A experiments of 1,000 users per arm, 10 % conversion, analysed at 5 equally spaced looks."""
    r = row(conn, """
        SELECT count(*) AS n, avg(significant::int)::float8 AS fixed,
               avg(sequential_significant::int)::float8 AS sequential, avg(naive_significant::int)::float8 AS naive,
               avg(p_value) AS mean_p, min(n_a) AS n_a, max(n_b) AS n_b
        FROM reco.stat_simulate(1000, 1000, 0.1, 0, 5, 0.42)""")
    assert r["n"] == 1000 and r["n_a"] == 1000 and r["n_b"] == 1000
    assert 0.035 <= r["fixed"] <= 0.065, r          # the fixed-horizon test at α = 0.05
    assert r["sequential"] <= 0.065, r              # stopping at the first crossing of the boundary
    assert r["naive"] > 0.09, r                     # p < 0.05 at any of 5 looks: peeking inflates it
    assert r["mean_p"] == pytest.approx(0.5, abs=0.03)
    # the same seed, the same experiments
    a = conn.execute("SELECT * FROM reco.stat_simulate(20, 200, 0.3, 0.1, 2, -0.25)").fetchall()
    b = conn.execute("SELECT * FROM reco.stat_simulate(20, 200, 0.3, 0.1, 2, -0.25)").fetchall()
    assert a == b


def test_simulated_power(conn):
    """A lift sized by stat_sample_size for 80 % power (5 % → 7 %) is detected in about 80 % of runs."""
    n = row(conn, "SELECT reco.stat_sample_size(0.05, 0.4, true, 0.05, 0.8) AS n")["n"]
    assert n == 2213
    r = row(conn, """
        SELECT avg(significant::int)::float8 AS power, avg(sequential_significant::int)::float8 AS seq_power,
               avg(rel_lift) AS lift, count(*) AS n
        FROM reco.stat_simulate(1000, %s, 0.05, 0.4, 1, 0.17)""", (n,))
    assert r["n"] == 1000
    assert 0.70 <= r["power"] <= 0.90, r
    assert r["lift"] == pytest.approx(0.4, abs=0.03)


def test_simulated_cuped(conn):
    """A continuous metric whose pre-period value has correlation 0.7: CUPED removes ~ρ² = 49 % of the
    variance, and its A/A false-positive rate stays nominal."""
    r = row(conn, """
        SELECT avg(cuped_variance_reduction) AS vr, min(cuped_variance_reduction) AS vr_min,
               avg(significant::int)::float8 AS fixed, avg(cuped_significant::int)::float8 AS cuped
        FROM reco.stat_simulate(400, 500, 10, 0, 1, 0.3, 'continuous', 0.05, 4, 0.7)""")
    assert r["vr"] >= 0.30 and r["vr"] == pytest.approx(0.49, abs=0.02), r
    assert r["vr_min"] > 0.3
    assert r["fixed"] <= 0.08 and r["cuped"] <= 0.08, r
    r = row(conn, """
        SELECT avg(significant::int)::float8 AS plain, avg(cuped_significant::int)::float8 AS cuped
        FROM reco.stat_simulate(400, 500, 10, 0.05, 1, 0.6, 'continuous', 0.05, 4, 0.7)""")
    assert r["cuped"] > r["plain"] + 0.1, r      # the same data, more power
