"""What reading an experiment's report often does to its decision: a vectorised A/A simulation.

Each simulated A/A test is a conversion experiment (the same rate in both arms) whose report is read
``reads`` times at equally spaced numbers of users. A run is wrong when any read says ship or stop
(worse): the rate over many runs is the false ship/stop rate. The rules are the report's
(sql/080_experiment_analysis.sql, reco.experiment_report), written again here in numpy so that tens of
thousands of runs take a second; tests/test_decisions.py checks that the SQL functions decide the
same on the same counts.

- ``always_valid``: no planned users (the default). Every read applies the mixture sequential test
  (reco.stat_msprt) to the pooled z of the data so far.
- ``planned``: planned looks. Look k happens when k/K of the planned users have arrived and is tested
  once, on the data of that moment, against its O'Brien–Fleming-type boundary; a read sees the
  looks reached so far.
- ``old_fixed`` and ``old_planned``: the rule the report applied before (kept here only to measure
  it): a fixed-horizon test (|z| ≥ z_{1−α/2}) on every read; with planned looks, the boundary of the
  look whose window the read falls in (ceil(fraction × K)), applied to the data so far, and the final
  boundary past the plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: the users (both arms) at which the always-valid test is tightest: reco.msprt_tuning()
MSPRT_TUNING = 5000.0


def msprt_boundary(n: np.ndarray, alpha: float = 0.05, tuning: float = MSPRT_TUNING) -> np.ndarray:
    """|z| boundary of reco.stat_msprt for n users so far (both arms)."""
    r = n * (-2 * np.log(alpha) + np.log(1 - 2 * np.log(alpha))) / tuning
    return np.sqrt((1 + r) / r * (np.log1p(r) + 2 * np.log(1 / alpha)))


def pooled_z(n_a: np.ndarray, x_a: np.ndarray, n_b: np.ndarray, x_b: np.ndarray) -> np.ndarray:
    """The two-proportion z of reco.stat_proportion_test (pooled variance); 0 where it is undefined."""
    pa, pb = x_a / n_a, x_b / n_b
    pool = (x_a + x_b) / (n_a + n_b)
    se = np.sqrt(pool * (1 - pool) * (1 / n_a + 1 / n_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, (pb - pa) / np.where(se > 0, se, 1), 0.0)


@dataclass(frozen=True)
class Counts:
    """Cumulative users and conversions per arm at each read: arrays of shape (runs, reads)."""
    n_a: np.ndarray
    x_a: np.ndarray
    n_b: np.ndarray
    x_b: np.ndarray


def simulate_counts(runs: int, reads: int, users_per_read: int, rate: float, seed: int) -> Counts:
    """A/A conversion data: ``users_per_read`` more users per arm between two reads."""
    rng = np.random.default_rng(seed)
    x_a = rng.binomial(users_per_read, rate, size=(runs, reads)).cumsum(axis=1)
    x_b = rng.binomial(users_per_read, rate, size=(runs, reads)).cumsum(axis=1)
    n = np.broadcast_to(users_per_read * np.arange(1, reads + 1), (runs, reads)).astype(float)
    return Counts(n, x_a.astype(float), n, x_b.astype(float))


def decide_always_valid(c: Counts, alpha: float = 0.05) -> np.ndarray:
    """Per run and read: does the read say ship or stop (worse)? (runs, reads) booleans."""
    z = pooled_z(c.n_a, c.x_a, c.n_b, c.x_b)
    return np.abs(z) >= msprt_boundary(c.n_a + c.n_b, alpha)


def look_reads(reads: int, looks: int) -> list[int]:
    """The read (0-based) at which each planned look is reached, when the plan ends at the last read
    and the reads are equally spaced: look k at k/K of the plan (reads must be a multiple of looks)."""
    if reads % looks:
        raise ValueError(f"{reads} reads do not put the {looks} looks on reads; use a multiple of {looks}")
    return [reads * k // looks - 1 for k in range(1, looks + 1)]


def decide_planned(c: Counts, bounds: Sequence[float]) -> np.ndarray:
    """Planned looks: each look tested once on the data of its moment; a read reports the first look
    that crossed among those reached (and keeps reporting it)."""
    reads = c.n_a.shape[1]
    at = look_reads(reads, len(bounds))
    z = pooled_z(c.n_a, c.x_a, c.n_b, c.x_b)
    crossed = np.zeros_like(z, dtype=bool)
    for k, read in enumerate(at):
        hit = np.abs(z[:, read]) >= bounds[k]
        crossed[:, read:] |= hit[:, None]
    return crossed


def decide_old_fixed(c: Counts, alpha: float = 0.05) -> np.ndarray:
    """The old default: a fixed-horizon test at every read."""
    return np.abs(pooled_z(c.n_a, c.x_a, c.n_b, c.x_b)) >= stats.norm.ppf(1 - alpha / 2)


def decide_old_planned(c: Counts, bounds: Sequence[float], planned_reads: int) -> np.ndarray:
    """The old planned looks: at a read, the boundary of look ceil(fraction × K) on the data so far
    (the final boundary past the plan)."""
    looks = len(bounds)
    reads = c.n_a.shape[1]
    fraction = np.minimum(1.0, np.arange(1, reads + 1) / planned_reads)
    look = np.clip(np.ceil(fraction * looks - 1e-9).astype(int), 1, looks)
    boundary = np.asarray(bounds)[look - 1]
    return np.abs(pooled_z(c.n_a, c.x_a, c.n_b, c.x_b)) >= boundary


def false_rate(decided: np.ndarray) -> float:
    """Share of the runs in which any read said ship or stop (worse)."""
    return float(decided.any(axis=1).mean())


@dataclass(frozen=True)
class PeekingRow:
    reads: int
    setting: str
    new_rate: float
    old_rate: float
    runs: int


def peeking_table(bounds: Sequence[float], *, runs: int = 20_000, reads_list: Sequence[int] = (1, 5, 20),
                  users_per_arm: int = 2000, rate: float = 0.1, seed: int = 23) -> list[PeekingRow]:
    """False ship/stop rate of A/A tests read 1, 5 and 20 times, for the default settings (no planned
    users) and for planned looks (K = len(bounds), the plan ending at the last read), new rule
    beside the old. ``bounds``: reco.stat_sequential_boundaries(K)'s z boundaries."""
    rows = []
    looks = len(bounds)
    for i, reads in enumerate(reads_list):
        c = simulate_counts(runs, reads, users_per_arm // reads, rate, seed + i)
        rows.append(PeekingRow(reads, "default (no planned users)", false_rate(decide_always_valid(c)),
                               false_rate(decide_old_fixed(c)), runs))
        if reads % looks == 0:
            rows.append(PeekingRow(reads, f"{looks} planned looks", false_rate(decide_planned(c, bounds)),
                                   false_rate(decide_old_planned(c, bounds, reads)), runs))
    return rows


def peeking_lines(bounds: Sequence[float], runs: int = 20_000) -> list[str]:
    """The peeking table as printable lines: reads × settings → false ship/stop rate, new beside old."""
    rows = peeking_table(bounds, runs=runs)
    se = max(np.sqrt(r.new_rate * (1 - r.new_rate) / r.runs) for r in rows)
    lines = [f"A/A tests read often ({runs:,} seeded runs each, 2,000 users per arm at 10 %; "
             f"standard error of a rate ≤ {100 * se:.2f} points): false ship/stop rate",
             f"{'reads':>5}  {'settings':<28} {'now':>7} {'before':>7}"]
    lines += [f"{r.reads:>5}  {r.setting:<28} {r.new_rate:>7.2%} {r.old_rate:>7.2%}" for r in rows]
    return lines
