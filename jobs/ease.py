"""EASE neighbour weights (Steck 2019, "Embarrassingly Shallow Autoencoders"), numpy.

B = argmin ‖R − R·B‖² + λ‖B‖², diag(B) = 0, has the closed form P = (RᵀR + λI)⁻¹,
B(j, i) = −P(j, i) / P(i, i). A user's score for feature i is Σ_j R(u, j)·B(j, i): the same sum
the serving function computes over reco.feature_neighbors, so each target feature's K largest
weights go into that table (through reco.neighbor_weights, which the feature_neighbors job moves
in) and serving does not change with the model.

R is binary (a user used a feature or not). RᵀR is accumulated over blocks of users, so memory is
the n × n matrices of the inverse only (see PEAK_MATRICES, measured by `reco bench ease`): the
weights are the inverse scaled in place and the top K are taken a block of target columns at a
time. Above setting ease_max_features the step is refused with an error. The tune computes one
inverse per λ and keeps its top K (EaseCache): its trials at other K truncate those lists.

Measured (`reco bench ease`, 10,000 users, median 135 features each; 2 shared cores, timings drift):
features   before: s / peak above the data    after: s / peak above the data
   4,000            20 s / 0.47 GiB                   11-15 s / 0.47 GiB
   6,000            50 s / 1.05 GiB                   27 s / 1.05 GiB
   8,000            91 s / 1.89 GiB                   54 s / 1.89 GiB
(the peak is np.linalg.inv's; before, the scaling and top K added copies that stayed below it)
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import psycopg
from psycopg import sql

from jobs.svd import fetch_columns

#: bytes of dense user rows materialised at once while accumulating RᵀR (at least the Gram matrix's size)
BLOCK_BYTES = 64 << 20
#: dtype of the n × n matrices. Not float32: np.linalg computes in float64 whatever the input (and
#: casts back), so a float32 Gram matrix made the inverse's peak larger, not smaller (measured)
DTYPE = np.float64
#: peak memory of the numpy step ≈ PEAK_MATRICES · n² · 8 bytes + the interactions: np.linalg.inv
#: holds the Gram matrix, its working copy, the identity it solves for and the result (measured with
#: `reco bench ease`: 8,000 features 1.9 GiB above the data); everything after the inverse is in place
PEAK_MATRICES = 4


class EaseTooLarge(ValueError):
    pass


def peak_bytes(n_items: int) -> int:
    """The n × n part of the step's peak memory (see PEAK_MATRICES)."""
    return PEAK_MATRICES * n_items * n_items * np.dtype(DTYPE).itemsize


def gram_matrix(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """RᵀR of the binary matrix given by its non-zeros (users, items), users 0.. sorted ascending.

    Blocks of dense user rows (at most the Gram matrix's size), one matrix product each (BLAS syrk: AᵀA)."""
    gram = np.zeros((n_items, n_items), DTYPE)
    if len(users):
        n_users = int(users[-1]) + 1
        itemsize = gram.itemsize
        block = max(1, max(BLOCK_BYTES, gram.nbytes) // (itemsize * n_items))
        starts = np.searchsorted(users, np.arange(0, n_users + block, block))
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            if a == b:
                continue
            lo = users[a]
            dense = np.zeros((int(users[b - 1] - lo) + 1, n_items), DTYPE)
            dense[users[a:b] - lo, items[a:b]] = 1.0
            gram += dense.T @ dense
            del dense
    return gram


def ease_weights(users: np.ndarray, items: np.ndarray, n_items: int, lam: float) -> np.ndarray:
    """The EASE weight matrix B (n_items × n_items, zero diagonal, DTYPE) for the binary matrix given
    by its non-zeros (users, items), users sorted ascending. One n × n matrix outlives the call: the
    inverse is scaled into B in place."""
    gram = gram_matrix(users, items, n_items)
    gram[np.diag_indices(n_items)] += lam
    p = np.linalg.inv(gram)
    del gram
    # B(j, i) = −P(j, i) / P(i, i): each column divided by minus its diagonal entry, in place
    p /= -p.diagonal().copy()
    np.fill_diagonal(p, 0.0)
    return p


def top_k_per_target(b: np.ndarray, k: int, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, target, weight) for the k largest positive weights of each target column in ``targets``,
    a block of target columns at a time (no second n × n array)."""
    n = b.shape[0]
    k = min(k, n - 1)
    if k < 1 or not len(targets):
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    step = max(1, BLOCK_BYTES // (8 * n))
    src, tgt, wts = [], [], []
    for s in range(0, len(targets), step):
        t = targets[s:s + step]
        cols = b[:, t]             # a copy, n × step
        cols *= -1                 # the largest weights first
        idx = np.argpartition(cols, k - 1, axis=0)[:k] if k < n else np.argsort(cols, axis=0)
        w = -np.take_along_axis(cols, idx, axis=0)
        keep = (w > 0).ravel(order="F")
        src.append(idx.ravel(order="F")[keep])
        tgt.append(np.repeat(t, idx.shape[0])[keep])
        wts.append(w.ravel(order="F")[keep].astype(np.float64))
    return np.concatenate(src), np.concatenate(tgt), np.concatenate(wts)


def first_k(src: np.ndarray, tgt: np.ndarray, w: np.ndarray, k: int,
            targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k largest weights of each target in ``targets`` out of top_k_per_target's rows for a
    larger k (ties broken by the source, as a direct call's rows are kept by weight only)."""
    order = np.lexsort((src, -w, tgt))
    src, tgt, w = src[order], tgt[order], w[order]
    starts = np.searchsorted(tgt, tgt, side="left")  # each row's target group start (tgt sorted)
    keep = (np.arange(len(tgt)) - starts < k) & np.isin(tgt, targets)
    return src[keep], tgt[keep], w[keep]


@dataclass
class EaseCache:
    """The top ``k_max`` weights of every target per (tenant, λ, interactions): a tune tries EASE at
    several K with the same λ on the same data, and K only truncates the same inverse's columns, so
    the n × n inverse (the step's time and memory) is computed once per λ, not once per trial."""
    k_max: int
    entries: dict = field(default_factory=dict)  # (tenant, λ, digest) → (k kept, (src, tgt, w) over all targets)
    inverses: int = 0                            # how many inverses were computed (the saving, measured)
    seconds: float = 0.0                         # spent computing them and their top K

    def top(self, tid: int, lam: float, keys: np.ndarray, users: np.ndarray, items: np.ndarray, k: int,
            targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        digest = hashlib.blake2b(digest_size=16)
        for part in (keys, users, items):
            digest.update(np.ascontiguousarray(part, np.int64).tobytes())
        key = (tid, float(lam), digest.hexdigest())
        cached = self.entries.get(key)
        if cached is None or cached[0] < k:
            started = time.perf_counter()
            kept = max(k, self.k_max)
            rows = top_k_per_target(ease_weights(users, items, len(keys), lam), kept, np.arange(len(keys)))
            self.entries[key] = cached = (kept, rows)
            self.inverses += 1
            self.seconds += time.perf_counter() - started
        return first_k(*cached[1], k, targets)


def write_ease_weights(conn: psycopg.Connection, tenant: str | None, cache: EaseCache | None = None) -> int:
    """For each tenant (of ``tenant``, or all) whose neighbor_model is 'ease': compute EASE and
    write each active feature's neighbors_k largest weights to reco.neighbor_weights.
    Returns the rows written. ``conn`` returns dict rows. With ``cache`` (the tune), an inverse
    already computed for the tenant's λ and interactions is reused."""
    tenants = conn.execute(
        """SELECT t.tenant_id, t.slug, reco.setting('ease_lambda', t.tenant_id)::float8 AS lam,
                  reco.setting('neighbors_k', t.tenant_id)::int AS k,
                  reco.setting('ease_max_features', t.tenant_id)::int AS max_n
           FROM reco.tenants t
           WHERE (%s::text IS NULL OR t.slug = %s)
             AND reco.setting('neighbor_model', t.tenant_id) #>> '{}' = 'ease'""", (tenant, tenant)).fetchall()
    written = 0
    for t in tenants:
        written += write_tenant(conn, t["tenant_id"], t["slug"], t["lam"], t["k"], t["max_n"], cache)
    return written


def write_tenant(conn: psycopg.Connection, tid: int, slug: str, lam: float, k: int, max_n: int,
                 cache: EaseCache | None = None) -> int:
    u, f = fetch_columns(conn, sql.SQL(
        """SELECT user_key::int4, feature_key::int4 FROM reco.interactions
           WHERE tenant_id = {} AND weight > 0 ORDER BY user_key""").format(sql.Literal(tid)), ["int4", "int4"])
    active = {r["feature_key"] for r in conn.execute(
        "SELECT feature_key FROM reco.features WHERE tenant_id = %s AND active", (tid,))}
    keys = np.unique(f)
    if len(keys) > max_n:
        raise EaseTooLarge(
            f"tenant {slug}: EASE over {len(keys):,} features needs ~{peak_bytes(len(keys)) / 2**30:.1f} GiB; "
            f"the limit is ease_max_features = {max_n:,}. Use neighbor_model cosine or rp3beta, or raise the limit.")
    _, users = np.unique(u, return_inverse=True)
    items = np.searchsorted(keys, f)
    rows = 0
    with conn.transaction():
        conn.execute("DELETE FROM reco.neighbor_weights WHERE tenant_id = %s", (tid,))
        if len(keys) > 1:
            targets = np.array([i for i, key in enumerate(keys.tolist()) if key in active], dtype=np.int64)
            if cache is None:
                b = ease_weights(users, items, len(keys), lam)
                src, tgt, w = top_k_per_target(b, k, targets)
                del b
            else:
                src, tgt, w = cache.top(tid, lam, keys, users, items, k, targets)
            with conn.cursor().copy(
                    "COPY reco.neighbor_weights (tenant_id, feature_key, neighbor_key, score) FROM STDIN") as copy:
                for s, t, x in zip(keys[src].tolist(), keys[tgt].tolist(), w.tolist(), strict=True):
                    copy.write_row((tid, s, t, x))
            rows = len(w)
    return rows
