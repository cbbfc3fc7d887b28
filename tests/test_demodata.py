"""The demo data generator: deterministic, consistent, and with signal for collaborative filtering."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.demodata import generate

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
