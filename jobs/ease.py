"""EASE neighbour weights (Steck 2019, "Embarrassingly Shallow Autoencoders"), numpy.

B = argmin ‖R − R·B‖² + λ‖B‖², diag(B) = 0, has the closed form P = (RᵀR + λI)⁻¹,
B(j, i) = −P(j, i) / P(i, i). A user's score for feature i is Σ_j R(u, j)·B(j, i): the same sum
the serving function computes over reco.feature_neighbors, so each target feature's K largest
weights go into that table (through reco.neighbor_weights, which the feature_neighbors job moves
in) and serving does not change with the model.

R is binary (a user used a feature or not). RᵀR is accumulated over blocks of users, so memory is
the n × n matrices only: the Gram matrix, its inverse and the weights, ~3 · n² · 8 bytes (measured:
README, "Benchmarks"). Above setting ease_max_features the step is refused with an error.
"""

from __future__ import annotations

import numpy as np
import psycopg

#: bytes of dense user rows materialised at once while accumulating RᵀR
BLOCK_BYTES = 64 << 20


class EaseTooLarge(ValueError):
    pass


def ease_weights(users: np.ndarray, items: np.ndarray, n_items: int, lam: float) -> np.ndarray:
    """The EASE weight matrix B (n_items × n_items, zero diagonal) for the binary matrix given by
    its non-zeros (users, items), users sorted ascending."""
    gram = np.zeros((n_items, n_items))
    if len(users):
        n_users = int(users.max()) + 1
        block = max(1, BLOCK_BYTES // (8 * n_items))
        starts = np.searchsorted(users, np.arange(0, n_users + block, block))
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            if a == b:
                continue
            lo = users[a]
            dense = np.zeros((int(users[b - 1] - lo) + 1, n_items))
            dense[users[a:b] - lo, items[a:b]] = 1.0
            gram += dense.T @ dense
    gram[np.diag_indices(n_items)] += lam
    p = np.linalg.inv(gram)
    del gram
    b = p / (-np.diag(p))
    b[np.diag_indices(n_items)] = 0.0
    return b


def top_k_per_target(b: np.ndarray, k: int, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, target, weight) for the k largest positive weights of each target column in ``targets``."""
    k = min(k, b.shape[0] - 1)
    cols = b[:, targets]
    idx = np.argpartition(-cols, k - 1, axis=0)[:k] if k < cols.shape[0] else np.argsort(-cols, axis=0)
    w = np.take_along_axis(cols, idx, axis=0)
    src = idx.ravel(order="F")
    tgt = np.repeat(targets, idx.shape[0])
    w = w.ravel(order="F")
    keep = w > 0
    return src[keep], tgt[keep], w[keep]


def write_ease_weights(conn: psycopg.Connection, tenant: str | None) -> int:
    """For each tenant (of ``tenant``, or all) whose neighbor_model is 'ease': compute EASE and
    write each active feature's neighbors_k largest weights to reco.neighbor_weights.
    Returns the rows written. ``conn`` returns dict rows."""
    tenants = conn.execute(
        """SELECT t.tenant_id, t.slug, reco.setting('ease_lambda', t.tenant_id)::float8 AS lam,
                  reco.setting('neighbors_k', t.tenant_id)::int AS k,
                  reco.setting('ease_max_features', t.tenant_id)::int AS max_n
           FROM reco.tenants t
           WHERE (%s::text IS NULL OR t.slug = %s)
             AND reco.setting('neighbor_model', t.tenant_id) #>> '{}' = 'ease'""", (tenant, tenant)).fetchall()
    written = 0
    for t in tenants:
        written += write_tenant(conn, t["tenant_id"], t["slug"], t["lam"], t["k"], t["max_n"])
    return written


def write_tenant(conn: psycopg.Connection, tid: int, slug: str, lam: float, k: int, max_n: int) -> int:
    cur = conn.cursor(binary=True)
    pairs = cur.execute(
        """SELECT user_key, feature_key FROM reco.interactions
           WHERE tenant_id = %s AND weight > 0 ORDER BY user_key""", (tid,)).fetchall()
    active = {r["feature_key"] for r in conn.execute(
        "SELECT feature_key FROM reco.features WHERE tenant_id = %s AND active", (tid,))}
    u = np.fromiter((p["user_key"] for p in pairs), np.int64, len(pairs))
    f = np.fromiter((p["feature_key"] for p in pairs), np.int64, len(pairs))
    keys = np.unique(f)
    if len(keys) > max_n:
        raise EaseTooLarge(
            f"tenant {slug}: EASE over {len(keys):,} features needs ~{3 * len(keys) ** 2 * 8 / 2**30:.1f} GiB; "
            f"the limit is ease_max_features = {max_n:,}. Use neighbor_model cosine or rp3beta, or raise the limit.")
    _, users = np.unique(u, return_inverse=True)
    items = np.searchsorted(keys, f)
    rows = 0
    with conn.transaction():
        conn.execute("DELETE FROM reco.neighbor_weights WHERE tenant_id = %s", (tid,))
        if len(keys) > 1:
            b = ease_weights(users, items, len(keys), lam)
            targets = np.array([i for i, key in enumerate(keys.tolist()) if key in active], dtype=np.int64)
            src, tgt, w = top_k_per_target(b, k, targets)
            del b
            with conn.cursor().copy(
                    "COPY reco.neighbor_weights (tenant_id, feature_key, neighbor_key, score) FROM STDIN") as copy:
                for s, t, x in zip(keys[src].tolist(), keys[tgt].tolist(), w.tolist(), strict=True):
                    copy.write_row((tid, s, t, x))
            rows = len(w)
    return rows
