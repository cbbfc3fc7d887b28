"""Planted churn in generated data (app/tools/churn_sim.py through `reco generate --churn`): off, the files are those
of before; on, users leave (no event after), fade and fail more before, by plan and segment, and the truth is
written next to the CSVs."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime

import numpy as np
import pytest

from app.tools import churn_sim
from app.tools.demodata import generate

END = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    base, churn = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("churn")
    generate(base, users=3000, end=END, seed=5)
    generate(churn, users=3000, end=END, seed=5, churn=True)
    return base, churn


def test_off_changes_nothing_and_on_only_removes_and_fades_events(planted):
    base, churn = planted
    for name in ("users.csv", "features.csv", "plans.csv"):
        assert (base / name).read_bytes() == (churn / name).read_bytes()
    assert not (base / "churn_truth.csv").exists()
    n_base = sum(1 for _ in (base / "events.csv").open())
    n_churn = sum(1 for _ in (churn / "events.csv").open())
    assert n_churn < n_base


def _events(path):
    out = {}
    with (path / "events.csv").open() as fh:
        for r in csv.DictReader(fh):
            out.setdefault(r["user_id"], []).append((r["occurred_at"], r["success"] == "true"))
    return out


def test_leavers_have_no_event_after_leaving_and_fail_more_before(planted):
    _, churn = planted
    truth = {r["user_id"]: r for r in csv.DictReader((churn / "churn_truth.csv").open())}
    events = _events(churn)
    leavers = [u for u, r in truth.items() if r["churn_at"]]
    assert 200 < len(leavers) < 2500
    assert all(t <= truth[u]["churn_at"] for u in leavers for t, _ in events.get(u, []))
    # the last week before leaving fails more often than the users who stay
    late = [ok for u in leavers for t, ok in events.get(u, [])
            if (np.datetime64(truth[u]["churn_at"][:-1]) - np.datetime64(t[:-1])) < np.timedelta64(7, "D")]
    stay = [ok for u, r in truth.items() if not r["churn_at"] for _, ok in events.get(u, [])]
    assert len(late) > 100 and np.mean(late) < np.mean(stay) - 0.1


def test_plan_shifts_the_base_rate_and_the_truth_is_written(planted):
    _, churn = planted
    users = {r["user_id"]: r for r in csv.DictReader((churn / "users.csv").open())}
    truth = list(csv.DictReader((churn / "churn_truth.csv").open()))
    h = {p: np.mean([float(r["hazard_per_day"]) for r in truth if users[r["user_id"]]["paid"] == p])
         for p in ("true", "false")}
    assert h["true"] < 0.7 * h["false"]
    meta = json.loads((churn / "churn_truth.json").read_text())
    assert meta["win_back"] == churn_sim.WIN_BACK
    assert 0.8 < meta["auc_of_truth_at_snapshot"] <= 1
    alive = [r for r in truth if r["alive_at_snapshot"] == "true"]
    p = np.array([float(r["p_churn_14d"]) for r in alive])
    y = np.array([r["churned_in_window"] == "true" for r in alive])
    # calibrated in the large: the planted probabilities add up to the leavers, within 4 standard errors
    assert abs(p.sum() - y.sum()) < 4 * np.sqrt((p * (1 - p)).sum())


def test_auc_and_the_truths_probability():
    assert churn_sim.auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert churn_sim.auc(np.array([1.0, 1.0]), np.array([0, 1])) == 0.5
    p = churn_sim.p_true(np.array([0.01, 0.01, 0.01]), np.array([np.nan, 0.0, 20.0]))
    assert 0 < p[0] < p[1] < p[2] < 1  # engaged < just disengaged < fading for long
    assert churn_sim.fade_cdf(0.0) == 0 and churn_sim.fade_cdf(1e6) == pytest.approx(1)
