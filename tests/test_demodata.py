"""The demo data generator: deterministic, consistent, and with signal for collaborative filtering."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from app.tools.demodata import ceiling_metrics, generate

END = datetime(2026, 11, 1, tzinfo=UTC)
FILES = ("users.csv", "features.csv", "plans.csv", "events.csv")


def _digest(d: Path) -> dict[str, str]:
    return {f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in FILES}


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("demo")
    counts = generate(d, users=3000, features=24, days=60, seed=3, end=END)
    return d, counts


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, users=300, features=12, days=30, seed=5, end=END)
    generate(b, users=300, features=12, days=30, seed=5, end=END)
    generate(c, users=300, features=12, days=30, seed=6, end=END)
    assert _digest(a) == _digest(b)
    assert _digest(a)["events.csv"] != _digest(c)["events.csv"]


def test_files_are_consistent(world):
    d, counts = world
    headers = {f: (d / f).read_text().splitlines()[0] for f in FILES}
    assert headers == {
        "users.csv": "user_id,paid,industry,company_size,usage_band,signup_at",
        "features.csv": "feature_id,name,category,requires_paid,tags,description,active",
        "plans.csv": "plan_id,name,price,quota,overage_price,includes_paid_features",
        "events.csv": "event_id,user_id,feature_id,occurred_at,kind,success",
    }
    users = {u["user_id"]: u for u in _rows(d / "users.csv")}
    feats = {f["feature_id"]: f for f in _rows(d / "features.csv")}
    events = _rows(d / "events.csv")
    assert (len(users), len(feats), len(events)) == (counts["users"], counts["features"], counts["events"])
    assert len({e["event_id"] for e in events}) == len(events)
    for e in events:
        assert e["user_id"] in users and e["feature_id"] in feats
        f = feats[e["feature_id"]]
        assert f["active"] == "true"
        if f["requires_paid"] == "true":
            assert users[e["user_id"]]["paid"] == "true"
        t = datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00"))
        assert END - timedelta(days=60) <= t <= END
    ok = sum(e["success"] == "true" for e in events) / len(events)
    assert 0.7 <= ok <= 0.9
    assert sum(f["requires_paid"] == "true" for f in feats.values()) >= 2


def test_taste_gives_collaborative_signal(world):
    """Using a feature makes using another feature of its category much more likely."""
    d, _ = world
    cat = {f["feature_id"]: f["category"] for f in _rows(d / "features.csv")}
    used: dict[str, set[str]] = defaultdict(set)
    for e in _rows(d / "events.csv"):
        used[e["user_id"]].add(e["feature_id"])
    n = len(used)
    rate = Counter(f for s in used.values() for f in s)
    lifts = []
    for a in rate:
        for b in rate:
            if a != b and cat[a] == cat[b] and rate[a] >= 50:
                both = sum(1 for s in used.values() if a in s and b in s)
                lifts.append((both / rate[a]) / (rate[b] / n))
    assert lifts and sorted(lifts)[len(lifts) // 2] > 1.5
    # popularity is not everything: the most used feature reaches well under all users
    assert rate.most_common(1)[0][1] / n < 0.7


def test_ceiling_metrics_hand_computed():
    m = ceiling_metrics([np.array([0, 1]), np.array([10])])
    assert m["users"] == 3
    assert m["ndcg"] == pytest.approx((1 + 1 / np.log2(3)) / 3)
    assert m["hit_rate"] == pytest.approx(2 / 3) and m["mrr"] == pytest.approx((1 + 1 / 2) / 3)
    assert ceiling_metrics([])["users"] == 0


def test_ceiling_ranks_each_users_last_adoption_and_changes_no_byte(tmp_path):
    """The generator's ranking of the held-out adoption: one rank per user with two features or more
    (reco evaluate's eligible users), the files the same as without it, and far above what the
    most popular features overall score on the same holdout."""
    a, b = tmp_path / "a", tmp_path / "b"
    ranks: list[np.ndarray] = []
    generate(a, users=2000, features=16, days=30, seed=4, end=END, ceiling=ranks)
    generate(b, users=2000, features=16, days=30, seed=4, end=END)
    assert _digest(a) == _digest(b)
    first: dict[str, dict[str, str]] = defaultdict(dict)
    for e in _rows(a / "events.csv"):  # in time order per user: the first use is the adoption
        first[e["user_id"]].setdefault(e["feature_id"], e["occurred_at"])
    held = {u: max(f, key=f.get) for u, f in first.items() if len(f) >= 2}
    r = np.concatenate(ranks)
    assert len(r) == len(held) > 1000 and r.min() >= 0 and r.max() < 16
    # the popularity baseline on the same holdout (the held-out adoptions left out of the counts)
    pop = Counter(f for u, fs in first.items() for f in fs if held.get(u) != f)
    order = [f for f, _ in pop.most_common()]

    def pop_ndcg(u: str, h: str) -> float:
        if h not in order:
            return 0.0
        rank = [f for f in order if f not in first[u] or f == h].index(h)
        return 1 / np.log2(rank + 2) if rank < 10 else 0.0

    ndcg_pop = np.mean([pop_ndcg(u, h) for u, h in held.items()])
    assert ceiling_metrics(ranks)["ndcg"] > 1.2 * ndcg_pop


# ---------------------------------------------------------------------------------------------
# shape "long-tail"
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_tail(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("long-tail")
    counts = generate(d, users=300, features=2000, days=60, seed=3, end=END, shape="long-tail")
    return d, counts


def test_long_tail_is_deterministic(long_tail, tmp_path):
    d, _ = long_tail
    generate(tmp_path / "a", users=300, features=2000, days=60, seed=3, end=END, shape="long-tail")
    generate(tmp_path / "b", users=300, features=2000, days=60, seed=4, end=END, shape="long-tail")
    assert _digest(tmp_path / "a") == _digest(d)
    assert _digest(tmp_path / "b")["events.csv"] != _digest(d)["events.csv"]


def test_long_tail_popularity_and_users(long_tail):
    d, counts = long_tail
    users = {u["user_id"]: u for u in _rows(d / "users.csv")}
    feats = {f["feature_id"]: f for f in _rows(d / "features.csv")}
    events = _rows(d / "events.csv")
    assert (len(users), len(feats), len(events)) == (300, 2000, counts["events"])
    assert len({e["event_id"] for e in events}) == len(events)
    pairs = {(e["user_id"], e["feature_id"]) for e in events}
    for e in events:
        f = feats[e["feature_id"]]
        assert f["active"] == "true"
        assert f["requires_paid"] == "false" or users[e["user_id"]]["paid"] == "true"
    # the median user has used 100 items or more, and there is a tail of heavy users
    per_user = sorted(Counter(u for u, _ in pairs).values())
    assert per_user[len(per_user) // 2] >= 100 and per_user[-1] >= 250
    # long tail: the top 10 % of items hold half the interactions, 40 % of items have <= 5 users
    per_item = Counter(f for _, f in pairs)
    by_item = sorted((per_item.get(f, 0) for f in feats), reverse=True)
    assert sum(by_item[:200]) >= 0.5 * len(pairs)
    assert sum(1 for n in by_item if n <= 5) >= 0.4 * len(feats)
    # every item has a name, a category, tags and a description; some are paid-only, a few inactive
    assert all(f["name"] and f["category"] and f["tags"].count("|") >= 2 and f["description"]
               for f in feats.values())
    assert 0.05 < sum(f["requires_paid"] == "true" for f in feats.values()) / len(feats) < 0.3
    assert 0 < sum(f["active"] == "false" for f in feats.values()) < 0.05 * len(feats)


def test_long_tail_has_co_usage_signal(long_tail):
    """Users of an item use the items of its cluster (same second tag) far more than the average user."""
    d, _ = long_tail
    cluster = {f["feature_id"]: f["tags"].split("|")[1] for f in _rows(d / "features.csv")}
    used: dict[str, set[str]] = defaultdict(set)
    for e in _rows(d / "events.csv"):
        used[e["user_id"]].add(e["feature_id"])
    n = len(used)
    share: dict[str, float] = Counter(cluster[f] for s in used.values() for f in s)
    total = sum(share.values())
    lifts = []
    for items in list(used.values())[:100]:
        mine = Counter(cluster[f] for f in items)
        top, k = mine.most_common(1)[0]
        lifts.append((k / len(items)) / (share[top] / total))
    assert n == 300 and sorted(lifts)[len(lifts) // 2] > 2


def test_cli_generate_long_tail(tmp_path):
    from typer.testing import CliRunner

    from app.cli import app

    res = CliRunner().invoke(app, ["generate", "--shape", "long-tail", "--users", "50", "--features", "300",
                                   "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert len(_rows(tmp_path / "features.csv")) == 300 and len(_rows(tmp_path / "users.csv")) == 50
    res = CliRunner().invoke(app, ["generate", "--shape", "zipf", "--out", str(tmp_path)])
    assert res.exit_code != 0
