"""Planted churn for generated data (`reco generate --churn`) and the retention benchmark
(app/tools/bench_retention.py).

The truth is planted, so a churn model and the retention loop can be checked against it:

- every user has a daily churn hazard h: a base rate shifted by the plan (paid users leave less), the usage band
  (light users leave more), the industry and the company size, times a lognormal individual factor;
- a user disengages at max(signup, window start) + 3 days + Exponential(1 / h), then fades for L days
  (Erlang, shape ``FADE_SHAPE``, mean ``FADE_DAYS``) and leaves: no event after that;
- while fading, their events thin out (to ``1 − FADE_DROP`` at the end) and their failures rise (the success
  probability falls to ``1 − FAIL_RISE`` of its usual value at the end): symptoms a model can read;
- the true probability at a date t that a user still there leaves within the next ``WINDOW_DAYS`` days follows
  from that process (``p_true``): for a user fading since e days, P(L ≤ e + 14 | L > e); for an engaged one,
  P(disengage at u ≤ 14 and L ≤ 14 − u);
- a win-back effect that differs by action and by churn tier (``WIN_BACK``): a would-be churner contacted with
  action a while in tier t stays with probability WIN_BACK[a][t]; nobody else is affected.

The truth is written next to the generated CSVs (``churn_truth.csv`` per user, ``churn_truth.json`` with the
parameters and win-back rates), never into the product's tables. The simulation draws from its own random
generator, so the other files are byte-for-byte those of a run without churn, except for the removed and faded
events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs.churn import auc as churn_auc

WINDOW_DAYS = 14  # the churn window of the truth's probability (the product's default churn_window_days)
FADE_DAYS = 14.0  # mean days from disengaging to leaving
FADE_SHAPE = 4  # Erlang shape of the fade's length (4: neither memoryless nor fixed)
FADE_DROP = 0.9  # at the moment of leaving, events are (1 − FADE_DROP) as frequent as usual
FAIL_RISE = 0.5  # at the moment of leaving, the success probability is (1 − FAIL_RISE) × its usual value
BASE_HAZARD = 0.004  # disengagements per day, for a free, regular, small user of an average industry
PAID_SHIFT = np.log(0.45)  # paid users: less than half the hazard
BAND_SHIFT = np.log(np.array([1.9, 1.0, 0.55]))  # light, regular, heavy (demodata.BANDS)
SIZE_SHIFT = np.log(np.array([1.3, 1.0, 0.8, 0.6]))  # solo, small, mid, enterprise (demodata.SIZES)
# e-commerce, photography, marketing agency, real estate, fashion, education, media, other (demodata.INDUSTRIES)
INDUSTRY_SHIFT = np.log(np.array([1.0, 1.2, 0.8, 1.1, 1.3, 1.5, 0.9, 1.0]))
INDIVIDUAL_SIGMA = 0.6
TIERS = ("high", "medium", "low")
TIER_CUTS = (0.70, 0.40)  # the product's default tier thresholds: high >= 0.70, medium >= 0.40
# the planted win-back rates (share of would-be churners an action keeps), per action and tier: a coupon wins
# few of the users already leaving (high tier) and many of the hesitant ones; an SMS does the opposite
WIN_BACK = {
    "coupon": {"high": 0.10, "medium": 0.40, "low": 0.45},
    "sms": {"high": 0.15, "medium": 0.08, "low": 0.05},
    "push": {"high": 0.02, "medium": 0.03, "low": 0.05},
}


def tier_of(p: np.ndarray) -> np.ndarray:
    """The churn tier of probabilities (the product's default thresholds)."""
    return np.where(p >= TIER_CUTS[0], "high", np.where(p >= TIER_CUTS[1], "medium", "low"))


def hazard(rng: np.random.Generator, paid: np.ndarray, band: np.ndarray, size: np.ndarray,
           industry: np.ndarray, base: float = BASE_HAZARD) -> np.ndarray:
    """Each user's daily churn hazard: the base shifted by plan and segment, times an individual factor."""
    log_h = (np.log(base) + PAID_SHIFT * paid + BAND_SHIFT[band] + SIZE_SHIFT[size] + INDUSTRY_SHIFT[industry]
             + rng.normal(0, INDIVIDUAL_SIGMA, len(paid)))
    return np.exp(log_h)


def fade_cdf(days: np.ndarray | float) -> np.ndarray:
    """P(L <= days) for the fade's length L (Erlang, shape FADE_SHAPE, mean FADE_DAYS)."""
    x = np.maximum(np.asarray(days, float), 0) * FADE_SHAPE / FADE_DAYS
    term = np.ones_like(x)
    total = np.ones_like(x)
    for n in range(1, FADE_SHAPE):
        term = term * x / n
        total = total + term
    return 1.0 - np.exp(-x) * total


def p_true(h: np.ndarray, fading_days: np.ndarray, days: float = WINDOW_DAYS) -> np.ndarray:
    """The true probability of leaving within ``days`` for a user still there: fading since ``fading_days``
    (NaN: still engaged), of disengagement hazard h per day."""
    h = np.asarray(h, float)
    e = np.asarray(fading_days, float)
    fading = (fade_cdf(e + days) - fade_cdf(e)) / np.maximum(1 - fade_cdf(e), 1e-12)
    u = np.linspace(0, days, 57)
    w = np.full(len(u), u[1] - u[0])
    w[[0, -1]] /= 2  # trapezoids
    engaged = (h[:, None] * np.exp(-h[:, None] * u[None, :]) * fade_cdf(days - u)[None, :]) @ w
    return np.where(np.isnan(e), engaged, fading)


@dataclass
class ChurnPlan:
    """Who disengages and leaves when (epoch seconds; -1: not before the window's end)."""

    hazard: np.ndarray
    disengage_at: np.ndarray
    churn_at: np.ndarray
    rng: np.random.Generator

    @classmethod
    def draw(cls, seed: int, paid: np.ndarray, band: np.ndarray, size: np.ndarray, industry: np.ndarray,
             signup: np.ndarray, start_s: int, end_s: int) -> ChurnPlan:
        rng = np.random.default_rng([seed, 26])  # its own stream: the generator's other draws are unchanged
        h = hazard(rng, paid.astype(float), band, size, industry)
        begin = np.maximum(signup, start_s) + 3 * 86400
        dis = begin + (rng.exponential(1.0 / h) * 86400).astype(np.int64)
        length = (rng.gamma(FADE_SHAPE, FADE_DAYS / FADE_SHAPE, len(h)) * 86400).astype(np.int64) + 1
        at = dis + length
        return cls(hazard=h, disengage_at=np.where(dis < end_s, dis, -1), churn_at=np.where(at < end_s, at, -1),
                   rng=rng)

    def fade(self, users: np.ndarray, t: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For events of (global user index, epoch seconds, success): which to keep and their success. Events
        after a user leaves are dropped; while they fade, events thin out and fail more."""
        dis, at = self.disengage_at[users], self.churn_at[users]
        end = np.where(at >= 0, at, np.iinfo(np.int64).max)
        span = np.where(at >= 0, at - dis, 1).astype(float)
        into = np.where((dis >= 0) & (t >= dis), np.clip((t - dis) / span, 0, 1), 0.0)  # 0 .. 1 over the fade
        keep = (t < end) & (self.rng.random(len(t)) >= FADE_DROP * into)
        fail = self.rng.random(len(t)) < FAIL_RISE * into
        return keep, ok & ~fail

    def write_truth(self, out_dir: Path, end_s: int) -> None:
        """churn_truth.csv: per user the hazard, the true probability of leaving within WINDOW_DAYS at the
        snapshot (end − WINDOW_DAYS days), whether they were still there then, and whether they left in the
        window; churn_truth.json: the snapshot, the parameters and the win-back rates per action and tier."""
        snap = end_s - WINDOW_DAYS * 86400
        alive = (self.churn_at < 0) | (self.churn_at > snap)
        fading = np.where((self.disengage_at >= 0) & (self.disengage_at <= snap),
                          (snap - self.disengage_at) / 86400.0, np.nan)
        p = p_true(self.hazard, fading)
        left = (self.churn_at > snap) & (self.churn_at <= end_s)
        tiers = tier_of(p)
        at = np.where(self.churn_at >= 0, np.datetime_as_string(
            np.datetime64("1970-01-01T00:00:00", "s") + np.maximum(self.churn_at, 0).astype("timedelta64[s]"),
            unit="s"), "")
        with (Path(out_dir) / "churn_truth.csv").open("w", newline="") as fh:
            fh.write("user_id,hazard_per_day,p_churn_14d,tier,churn_at,alive_at_snapshot,churned_in_window\n")
            fh.write("".join(
                f"U{i + 1},{hz:.6g},{pp:.6f},{tr},{a + 'Z' if a else ''},{str(al).lower()},{str(lf).lower()}\n"
                for i, (hz, pp, tr, a, al, lf) in enumerate(zip(self.hazard.tolist(), p.tolist(), tiers.tolist(),
                                                               at.tolist(), alive.tolist(), left.tolist(),
                                                               strict=True))))
        truth = {"snapshot": str(np.datetime64(snap, "s")) + "Z", "window_days": WINDOW_DAYS,
                 "fade_days_mean": FADE_DAYS, "fade_shape": FADE_SHAPE, "fade_drop": FADE_DROP,
                 "fail_rise": FAIL_RISE, "base_hazard_per_day": BASE_HAZARD,
                 "tier_cuts": TIER_CUTS, "win_back": WIN_BACK,
                 "auc_of_truth_at_snapshot": auc(p[alive], left[alive]),
                 "users_alive_at_snapshot": int(alive.sum()), "churned_in_window": int(left.sum())}
        (Path(out_dir) / "churn_truth.json").write_text(json.dumps(truth, indent=2) + "\n")


def auc(score: np.ndarray, label: np.ndarray) -> float | None:
    """Area under the ROC curve (jobs.churn.auc: Mann-Whitney, ties averaged); None without both classes."""
    value = churn_auc(label, score)
    return None if np.isnan(value) else value
