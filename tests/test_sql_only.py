"""The SQL-only path (pg_cron, no `reco jobs loop`) computes feature factors itself above 64 features:
subspace iteration in SQL (sql/041_sql_factors.sql). Its factors are orthonormal, and when R's rank fits
in 64 dimensions they keep every user-to-user cosine exactly, as the SVD does — the random projection
that stood in before does not."""

from __future__ import annotations

import numpy as np
from psycopg.types.json import Jsonb

from jobs.svd import svd_factors

FEATURES = 90
USERS = 50
DAY = "2026-10-15T00:00:00Z"


def _load(conn) -> None:
    rng = np.random.default_rng(7)
    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb([{"feature_id": f"f{i}"} for i in range(FEATURES)]),))
    events = [{"user_id": f"U{u}", "feature_id": f"f{i}", "occurred_at": DAY}
              for u in range(USERS) for i in rng.choice(FEATURES, size=int(rng.integers(3, 12)), replace=False)]
    conn.execute("SELECT reco.ingest_events(%s)", (Jsonb(events),))


def _strengths(conn) -> tuple[np.ndarray, list[int], list[int]]:
    rows = conn.execute("SELECT user_key, feature_key, strength FROM reco.interaction_strengths"
                        " WHERE strength > 0 ORDER BY 1, 2").fetchall()
    users = sorted({r["user_key"] for r in rows})
    features = [r["feature_key"] for r in conn.execute("SELECT feature_key FROM reco.features ORDER BY 1")]
    r = np.zeros((len(users), len(features)))
    for row in rows:
        r[users.index(row["user_key"]), features.index(row["feature_key"])] = row["strength"]
    return r, users, features


def _stored_cosines(conn, users: list[int]) -> np.ndarray:
    rows = conn.execute("SELECT a.user_key AS a, b.user_key AS b, 1 - (a.embedding <=> b.embedding) AS c"
                        " FROM reco.user_vectors a CROSS JOIN reco.user_vectors b").fetchall()
    out = np.zeros((len(users), len(users)))
    for row in rows:
        out[users.index(row["a"]), users.index(row["b"])] = row["c"]
    return out


def test_sql_factors_keep_the_user_cosines_where_a_random_projection_does_not(conn):
    _load(conn)
    r, users, _ = _strengths(conn)
    unit = r / np.linalg.norm(r, axis=1, keepdims=True)
    exact = unit @ unit.T

    conn.execute("SELECT reco.set_setting('sql_factors_max_features', %s)", (str(FEATURES - 1),))
    conn.execute("CALL reco.run_job('embeddings')")  # no Python in this session: as pg_cron runs it
    random_error = np.abs(_stored_cosines(conn, users) - exact).max()

    conn.execute("SELECT reco.reset_setting('sql_factors_max_features')")
    conn.execute("CALL reco.run_job('embeddings')")
    methods = conn.execute("SELECT DISTINCT method FROM reco.feature_factors").fetchall()
    assert methods == [{"method": "sql"}]
    factors = np.array([np.array(r["f"].strip("[]").split(","), dtype=float) for r in conn.execute(
        "SELECT factor::text AS f FROM reco.feature_factors ORDER BY feature_key")])
    gram = factors.T @ factors
    kept = np.diag(gram) > 0.5  # rank(R) ≤ 50 < 64: the other directions are dropped (zero)
    assert np.allclose(gram[np.ix_(kept, kept)], np.eye(kept.sum()), atol=1e-4)
    assert kept.sum() == np.linalg.matrix_rank(r)
    sql_error = np.abs(_stored_cosines(conn, users) - exact).max()
    assert sql_error < 1e-3 < random_error

    # the same subspace as numpy's SVD (jobs/svd.py): equal projections of every feature
    rows, cols = np.nonzero(r)
    svd = svd_factors(rows, cols, r[rows, cols], len(users), r.shape[1])
    q = factors[:, kept]
    assert np.allclose(q @ q.T, svd @ svd.T, atol=1e-3)
