"""The neighbour models (cosine, RP3beta, EASE) against similarities computed here, independently of
the implementation (numpy on the same tiny binary matrix), and the runs pg_cron leaves for Python."""

from __future__ import annotations

import numpy as np
import pytest
from psycopg.types.json import Jsonb

from jobs.runner import JobFailed, loop, run_job

DAY = "2026-10-15T00:00:00Z"  # every event at the same instant
FEATURES = ["a", "b", "c", "d", "e"]
#: the binary R: user -> features used (U1 uses a twice: a stronger row for serving, the same R)
USES = {
    "U1": ["a", "a", "b", "c"],
    "U2": ["a", "b"],
    "U3": ["b", "c", "d"],
    "U4": ["a", "d", "e"],
    "U5": ["c", "d", "e"],
    "U6": ["b", "e"],
}


def matrix(cap: int | None = None) -> np.ndarray:
    """R; with ``cap``, each user's ``cap`` strongest features only (most uses, then the first key)."""
    r = np.zeros((len(USES), len(FEATURES)))
    for u, feats in enumerate(USES.values()):
        strongest = sorted(set(feats), key=lambda f: (-feats.count(f), FEATURES.index(f)))[:cap]
        for f in strongest:
            r[u, FEATURES.index(f)] = 1.0
    return r


def cosine(r: np.ndarray, shrinkage: float, pairs: np.ndarray | None = None) -> np.ndarray:
    """S(j, i) = |U(j) ∩ U(i)| / sqrt(|U(j)||U(i)|) · c / (c + shrinkage), c = |U(j) ∩ U(i)|, the
    co-users counted in ``pairs`` (R cut to each user's strongest features; default R)."""
    pairs = r if pairs is None else pairs
    n = len(FEATURES)
    s = np.zeros((n, n))
    for j in range(n):
        for i in range(n):
            both = np.sum(pairs[:, j] * pairs[:, i])
            if i != j and both > 0:
                s[j, i] = both / np.sqrt(r[:, j].sum() * r[:, i].sum()) * both / (both + shrinkage)
    return s


def rp3beta(r: np.ndarray, alpha: float, beta: float, pairs: np.ndarray | None = None) -> np.ndarray:
    """S(j, i) = Σ_u (1/|U(j)|)^α (1/|I(u)|)^α / |U(i)|^β over the users of both (in ``pairs``)."""
    pairs = r if pairs is None else pairs
    n = len(FEATURES)
    s = np.zeros((n, n))
    for j in range(n):
        for i in range(n):
            if i == j:
                continue
            for u in range(r.shape[0]):
                if pairs[u, j] and pairs[u, i]:
                    s[j, i] += (1 / r[:, j].sum()) ** alpha * (1 / r[u].sum()) ** alpha
            s[j, i] /= r[:, i].sum() ** beta
    return s


def ease(r: np.ndarray, lam: float) -> np.ndarray:
    """P = (RᵀR + λI)⁻¹, B(j, i) = −P(j, i) / P(i, i), diagonal 0."""
    p = np.linalg.inv(r.T @ r + lam * np.eye(r.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def expected_rows(s: np.ndarray, k: int) -> dict[tuple[str, str], float]:
    """Each target's K largest positive sources (K ≥ the sources here: no ties at the cut)."""
    out = {}
    for i in range(len(FEATURES)):
        col = [(s[j, i], j) for j in range(len(FEATURES)) if s[j, i] > 0]
        for score, j in sorted(col, reverse=True)[:k]:
            out[(FEATURES[j], FEATURES[i])] = score
    return out


def load(conn, settings: dict) -> None:
    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb(
        [{"feature_id": f, "category": f"cat-{f}"} for f in FEATURES]),))
    report = conn.execute("SELECT reco.ingest_events(%s) AS r", (Jsonb(
        [{"event_id": f"{u}-{n}", "user_id": u, "feature_id": f, "occurred_at": DAY}
         for u, feats in USES.items() for n, f in enumerate(feats)]),)).fetchone()["r"]
    assert report["rejected"] == [] and report["accepted"] == sum(len(v) for v in USES.values())
    # no content neighbours: every stored row is the model's
    for key, value in {"min_feature_users": 0, **settings}.items():
        conn.execute("SELECT reco.set_setting(%s, %s)", (key, Jsonb(value)))


def stored(conn, source: str = "cf") -> dict[tuple[str, str], float]:
    rows = conn.execute("""
        SELECT f.feature_id AS j, g.feature_id AS i, n.score FROM reco.feature_neighbors n
        JOIN reco.features f ON f.tenant_id = n.tenant_id AND f.feature_key = n.feature_key
        JOIN reco.features g ON g.tenant_id = n.tenant_id AND g.feature_key = n.neighbor_key
        WHERE n.source = %s""", (source,)).fetchall()
    return {(r["j"], r["i"]): r["score"] for r in rows}


def last_run(conn, job: str) -> dict:
    return conn.execute("SELECT status, message, rows_written FROM reco.job_runs WHERE job = %s "
                        "ORDER BY run_id DESC LIMIT 1", (job,)).fetchone()


#: relative tolerance per model (EASE: a matrix inverse, float64)
REL = {"cosine": 1e-9, "rp3beta": 1e-9, "ease": 1e-7}


def assert_rows(got: dict, want: dict, rel: float) -> None:
    assert set(got) == set(want)
    for key, score in want.items():
        assert got[key] == pytest.approx(score, rel=rel, abs=1e-12), key


MODELS = {
    "cosine": ({"neighbor_model": "cosine", "neighbor_shrinkage": 2}, lambda r: cosine(r, 2.0)),
    "rp3beta": ({"neighbor_model": "rp3beta", "rp3_alpha": 0.8, "rp3_beta": 0.3}, lambda r: rp3beta(r, 0.8, 0.3)),
    "ease": ({"neighbor_model": "ease", "ease_lambda": 1.5}, lambda r: ease(r, 1.5)),
}


@pytest.mark.parametrize("model", list(MODELS))
def test_model_rows_equal_hand_computed_similarities(conn, db_url, model):
    settings, compute = MODELS[model]
    load(conn, {**settings, "neighbors_k": 10})
    runs = run_job(db_url, "feature_neighbors")  # the Python runner: EASE's numpy step runs
    assert [r["status"] for r in runs] == ["succeeded"]
    s = compute(matrix())
    if model == "ease":
        assert (s < 0).any()  # EASE has negative weights: they are not stored
    assert_rows(stored(conn), expected_rows(s, 10), REL[model])
    assert stored(conn, "content") == {}


@pytest.mark.parametrize("model", list(MODELS))
def test_each_target_keeps_its_k_best_sources(conn, db_url, model):
    settings, compute = MODELS[model]
    load(conn, {**settings, "neighbors_k": 2})
    run_job(db_url, "feature_neighbors")
    s = compute(matrix())
    got = stored(conn)
    for i, target in enumerate(FEATURES):
        kept = sorted((score for (_, t), score in got.items() if t == target), reverse=True)
        best = sorted((x for x in s[:, i] if x > 0), reverse=True)[:2]
        assert kept == pytest.approx(best, rel=REL[model]), target
        for (src, t), score in got.items():  # and each kept row is S(source, target)
            if t == target:
                assert score == pytest.approx(s[FEATURES.index(src), i], rel=REL[model])


@pytest.mark.parametrize("model", list(MODELS))
def test_served_itemcf_is_the_sum_of_strength_times_similarity(conn, db_url, model):
    settings, compute = MODELS[model]
    load(conn, {**settings, "neighbors_k": 10})
    run_job(db_url, "all")
    rows = stored(conn)
    # U1 used a twice, b and c once: strength = sqrt(weight / largest) = 1, sqrt(1/2), sqrt(1/2)
    strength = {"a": 1.0, "b": 0.5 ** 0.5, "c": 0.5 ** 0.5}
    itemcf = {i: sum(strength[j] * rows.get((j, i), 0.0) for j in strength) for i in FEATURES}
    unseen = {i: v for i, v in itemcf.items() if i not in strength}
    assert max(unseen.values()) > 0
    served = conn.execute("SELECT feature_id, score FROM reco.recommend_features('U1', 10, %s)", (Jsonb(
        {"explore": False, "exclude_seen": True, "weights": {
            "itemcf": 1, "usercf": 0, "prior": 0, "popularity": 0, "session": 0}}),)).fetchall()
    got = {r["feature_id"]: r["score"] for r in served}
    assert set(got) == set(unseen)
    top = max(unseen.values())  # each component is normalised by its largest candidate
    for feature, value in unseen.items():
        assert got[feature] == pytest.approx(value / top, rel=1e-9, abs=1e-12), feature  # of the stored S


@pytest.mark.parametrize("model", ["cosine", "rp3beta"])
def test_pairs_come_from_each_users_strongest_features(conn, db_url, model):
    """neighbor_user_items = 2: co-usage counted over each user's 2 strongest features (U1: a, used
    twice, then b; U3: b, c; U4: a, d; U5: c, d), the degrees over all of them."""
    load(conn, {**MODELS[model][0], "neighbors_k": 10, "neighbor_user_items": 2})
    run_job(db_url, "feature_neighbors")
    cut = matrix(2)
    assert cut.sum(axis=1).tolist() == [2, 2, 2, 2, 2, 2]
    s = cosine(matrix(), 2.0, cut) if model == "cosine" else rp3beta(matrix(), 0.8, 0.3, cut)
    assert_rows(stored(conn), expected_rows(s, 10), REL[model])
    assert set(stored(conn)) != set(expected_rows(MODELS[model][1](matrix()), 10))


def test_a_source_keeps_at_most_five_k_rows(conn, db_url):
    """h is used with each of f0..f6 by one user: it is the only source of 7 targets; K = 1 keeps 5."""
    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb(
        [{"feature_id": f} for f in ["h"] + [f"f{i}" for i in range(7)]]),))
    conn.execute("SELECT reco.ingest_events(%s)", (Jsonb(
        [{"user_id": f"U{i}", "feature_id": f, "occurred_at": DAY} for i in range(7) for f in ("h", f"f{i}")]),))
    for key, value in {"min_feature_users": 0, "neighbors_k": 1}.items():
        conn.execute("SELECT reco.set_setting(%s, %s)", (key, Jsonb(value)))
    run_job(db_url, "feature_neighbors")
    got = stored(conn)
    from_h = sorted(i for (j, i) in got if j == "h")
    assert from_h == [f"f{i}" for i in range(5)]  # equal scores: the first 5 targets by key
    assert all(score == pytest.approx(1 / 7 ** 0.5) for (j, _), score in got.items() if j == "h")
    assert sorted(j for (j, i) in got if i == "h") == ["f0"]  # h's own K = 1 best source


def test_ease_under_plain_call_is_deferred_then_picked_up(conn, db_url):
    settings, compute = MODELS["ease"]
    load(conn, {**settings, "neighbors_k": 10})
    run_job(db_url, "feature_neighbors")
    before = stored(conn)
    assert before
    finished = conn.execute("SELECT max(finished_at) AS t FROM reco.job_runs").fetchone()["t"]

    # pg_cron's call: no numpy, so nothing is rebuilt, the run says so and queues the work
    conn.execute("CALL reco.run_job('feature_neighbors')")
    run = last_run(conn, "feature_neighbors")
    assert run["status"] == "deferred"
    assert "needs Python" in run["message"] and "queued" in run["message"]
    assert f"{finished:%Y-%m-%d %H:%M:%S}" in run["message"]  # the neighbours in use: of the last run
    queue = conn.execute("SELECT job, reason FROM reco.job_queue").fetchall()
    assert [q["job"] for q in queue] == ["feature_neighbors"] and queue[0]["reason"] == run["message"]
    assert stored(conn) == before

    # the Python runner does the work and clears the queue
    assert [r["status"] for r in run_job(db_url, "feature_neighbors")] == ["succeeded"]
    assert conn.execute("SELECT count(*) AS n FROM reco.job_queue").fetchone()["n"] == 0
    assert_rows(stored(conn), expected_rows(compute(matrix()), 10), REL["ease"])

    # `reco jobs loop` picks up what a plain CALL queued
    conn.execute("CALL reco.run_job('feature_neighbors')")
    mark = conn.execute("SELECT max(run_id) AS id FROM reco.job_runs").fetchone()["id"]
    lines: list[str] = []
    loop(db_url, stop_after=3, log=lines.append)
    runs = conn.execute("SELECT job, status FROM reco.job_runs WHERE run_id > %s AND job = 'feature_neighbors'",
                        (mark,)).fetchall()
    assert {"job": "feature_neighbors", "status": "succeeded"} in runs, lines
    assert conn.execute("SELECT count(*) AS n FROM reco.job_queue").fetchone()["n"] == 0
    assert any("feature_neighbors [default]: succeeded" in line for line in lines)


def test_svd_under_plain_call_is_deferred(conn, db_url):
    """70 active features > 64 dims: the SVD needs numpy. A plain CALL uses factors computed in SQL (a
    random projection above sql_factors_max_features) when there is no SVD yet, or the last SVD
    factors, names them, and queues the SVD; the runner clears the queue."""
    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb(
        [{"feature_id": f"f{i}", "category": f"c{i % 7}"} for i in range(70)]),))
    conn.execute("SELECT reco.ingest_events(%s)", (Jsonb(
        [{"user_id": f"U{u}", "feature_id": f"f{(u * 3 + j) % 70}", "occurred_at": DAY}
         for u in range(40) for j in range(3)]),))

    def methods() -> dict:
        return {r["method"]: r["n"] for r in conn.execute(
            "SELECT method, count(*) AS n FROM reco.feature_factors GROUP BY 1")}

    def queued() -> list[str]:
        return [r["job"] for r in conn.execute("SELECT job FROM reco.job_queue")]

    # above sql_factors_max_features: a random projection
    conn.execute("SELECT reco.set_setting('sql_factors_max_features', '69')")
    conn.execute("CALL reco.run_job('embeddings')")
    run = last_run(conn, "embeddings")
    assert run["status"] == "deferred" and "random projection" in run["message"]
    assert methods() == {"random": 70} and queued() == ["embeddings"]
    assert conn.execute("SELECT count(*) AS n FROM reco.user_vectors").fetchone()["n"] == 40
    # within it (the default): factors computed in SQL (tests/test_sql_only.py checks what they are worth)
    conn.execute("SELECT reco.reset_setting('sql_factors_max_features')")
    conn.execute("CALL reco.run_job('embeddings')")
    run = last_run(conn, "embeddings")
    assert run["status"] == "deferred" and "computed in SQL" in run["message"]
    assert methods() == {"sql": 70} and queued() == ["embeddings"]

    assert [r["status"] for r in run_job(db_url, "embeddings")] == ["succeeded"]
    assert methods() == {"svd": 70} and queued() == []
    computed = conn.execute("SELECT min(computed_at) AS t FROM reco.feature_factors").fetchone()["t"]

    conn.execute("CALL reco.run_job('embeddings')")
    run = last_run(conn, "embeddings")
    assert run["status"] == "deferred" and "factors of" in run["message"]
    assert f"{computed:%Y-%m-%d %H:%M:%S}" in run["message"]
    assert methods() == {"svd": 70} and queued() == ["embeddings"]

    mark = conn.execute("SELECT max(run_id) AS id FROM reco.job_runs").fetchone()["id"]
    loop(db_url, stop_after=3, log=lambda line: None)
    runs = conn.execute("SELECT status FROM reco.job_runs WHERE run_id > %s AND job = 'embeddings'",
                        (mark,)).fetchall()
    assert {"status": "succeeded"} in runs and queued() == []


def test_ease_above_the_feature_limit_fails_with_a_clear_message(conn, db_url):
    settings, _ = MODELS["ease"]
    load(conn, {**settings, "ease_max_features": 4})
    with pytest.raises(JobFailed, match="ease_max_features"):
        run_job(db_url, "feature_neighbors", "default")
    run = last_run(conn, "feature_neighbors")
    assert run["status"] == "failed"
    assert "EASE over 5 features" in run["message"] and "ease_max_features = 4" in run["message"]
    assert "cosine or rp3beta" in run["message"]
    assert stored(conn) == {}


def test_ease_cache_computes_one_inverse_per_lambda_and_truncates_it_per_k(conn):
    """The tune's EASE cache: K 2 and then K 4 at one λ, a single inverse; each K's rows are the
    hand-computed top K, as the job writes them without the cache; a second λ, a second inverse."""
    from jobs.ease import EaseCache, write_ease_weights

    settings, compute = MODELS["ease"]
    load(conn, settings)
    weights = lambda: {(r["j"], r["i"]): r["score"] for r in conn.execute(  # noqa: E731
        """SELECT f.feature_id AS j, g.feature_id AS i, w.score FROM reco.neighbor_weights w
           JOIN reco.features f ON f.tenant_id = w.tenant_id AND f.feature_key = w.feature_key
           JOIN reco.features g ON g.tenant_id = w.tenant_id AND g.feature_key = w.neighbor_key""")}
    cache = EaseCache(k_max=4)
    for k in (2, 4, 2):
        conn.execute("SELECT reco.set_setting('neighbors_k', %s)", (Jsonb(k),))
        write_ease_weights(conn, "default", cache)
        cached = weights()
        write_ease_weights(conn, "default")
        assert_rows(cached, weights(), REL["ease"])
        assert_rows(cached, expected_rows(compute(matrix()), k), REL["ease"])
    assert cache.inverses == 1
    conn.execute("SELECT reco.set_setting('ease_lambda', %s)", (Jsonb(3.0),))
    write_ease_weights(conn, "default", cache)
    assert_rows(weights(), expected_rows(ease(matrix(), 3.0), 2), REL["ease"])
    assert cache.inverses == 2
