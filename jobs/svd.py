"""Feature factors by SVD, for catalogs larger than the user-vector dimension (numpy).

A user's vector is normalise(Σ strength · factor) over the features the user used; with the top
right-singular vectors of R (users × features, the interaction strengths) as factors, the
user-to-user cosine is kept as well as 64 dimensions can. R is read from the interactions and
never made dense: a randomized SVD (Halko, Martinsson & Tropp 2011) only multiplies R and Rᵀ by
thin matrices (np.bincount over the non-zeros), so time and memory grow with the interactions and
the catalog, not with the catalog squared. With ≤ 64 features the SQL job uses exact one-hot
factors and this step does nothing. pg_cron cannot run it: the embeddings job then logs the run
'deferred' and `reco jobs loop` comes back to it (reco._defer).
"""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql

DIM = 64
OVERSAMPLE = 16
POWER_ITERATIONS = 3


def _tenants(conn: psycopg.Connection, tenant: str | None, minimum: int) -> list[int]:
    rows = conn.execute(
        """SELECT t.tenant_id FROM reco.tenants t
           WHERE (%s::text IS NULL OR t.slug = %s)
             AND (SELECT count(*) FROM reco.features f WHERE f.tenant_id = t.tenant_id AND f.active) > %s""",
        (tenant, tenant, minimum)).fetchall()
    return [r["tenant_id"] for r in rows]


_WIRE = {"int4": ">i4", "float8": ">f8"}


def fetch_columns(conn: psycopg.Connection, query: sql.Composable, types: list[str]) -> list[np.ndarray]:
    """The columns of ``query`` (fixed-width types only: int4, float8; no NULLs) as numpy arrays, read
    with COPY ... (FORMAT binary) straight into one buffer: no Python object per row (1.5M rows as
    dict rows took ~600 MB in the job process)."""
    fields = [("n", ">i2")]
    for i, t in enumerate(types):
        fields += [(f"len{i}", ">i4"), (f"c{i}", _WIRE[t])]
    dtype = np.dtype(fields)
    with conn.cursor().copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(query)) as copy:
        data = b"".join(bytes(block) for block in copy)
    # 19 bytes of header (signature, flags, extension length 0), 2 bytes of trailer (-1)
    rows = np.frombuffer(data, dtype, count=(len(data) - 21) // dtype.itemsize, offset=19)
    return [rows[f"c{i}"].astype(np.int64 if t == "int4" else np.float64) for i, t in enumerate(types)]


def _matmul(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, x: np.ndarray, n_out: int) -> np.ndarray:
    """(R @ x) for R given by its non-zeros (rows, cols, vals): one bincount per column of x."""
    out = np.empty((n_out, x.shape[1]))
    for c in range(x.shape[1]):
        out[:, c] = np.bincount(rows, weights=vals * x[cols, c], minlength=n_out)
    return out


def svd_factors(users: np.ndarray, items: np.ndarray, vals: np.ndarray, n_users: int, n_items: int,
                seed: int = 0) -> np.ndarray:
    """The top ``DIM`` right-singular vectors of the sparse matrix (users, items, vals), one row per item."""
    rank = min(DIM + OVERSAMPLE, n_items)
    rng = np.random.default_rng(seed)
    y = _matmul(users, items, vals, rng.standard_normal((n_items, rank)), n_users)
    for _ in range(POWER_ITERATIONS):
        q, _ = np.linalg.qr(y)
        z, _ = np.linalg.qr(_matmul(items, users, vals, q, n_items))
        y = _matmul(users, items, vals, z, n_users)
    q, _ = np.linalg.qr(y)
    b = _matmul(items, users, vals, q, n_items).T          # Qᵀ R, rank × items
    _, _, vt = np.linalg.svd(b, full_matrices=False)
    factors = np.zeros((n_items, DIM))
    factors[:, :min(DIM, vt.shape[0])] = vt[:DIM].T
    return factors


def write_svd_factors(conn: psycopg.Connection, tenant: str | None) -> int:
    """Write method='svd' rows to reco.feature_factors for each tenant with > DIM active features.

    ``conn`` returns dict rows (as in jobs.runner)."""
    written = 0
    for tid in _tenants(conn, tenant, DIM):
        keys = np.array([r["feature_key"] for r in conn.execute(
            "SELECT feature_key FROM reco.features WHERE tenant_id = %s AND active ORDER BY feature_key",
            (tid,))], dtype=np.int64)
        u, f, v = fetch_columns(conn, sql.SQL(
            """SELECT s.user_key::int4, s.feature_key::int4, s.strength::float8 FROM reco.interaction_strengths s
               JOIN reco.features f ON f.tenant_id = s.tenant_id AND f.feature_key = s.feature_key AND f.active
               WHERE s.tenant_id = {} AND s.strength > 0""").format(sql.Literal(tid)), ["int4", "int4", "float8"])
        if len(u):
            _, users = np.unique(u, return_inverse=True)
            items = np.searchsorted(keys, f)
            factors = svd_factors(users, items, v, int(users.max()) + 1, len(keys), seed=tid)
        else:
            factors = np.zeros((len(keys), DIM))
        with conn.transaction():
            conn.execute("DELETE FROM reco.feature_factors WHERE tenant_id = %s", (tid,))
            with conn.cursor().copy(
                    "COPY reco.feature_factors (tenant_id, feature_key, factor, method) FROM STDIN") as copy:
                for k, vec in zip(keys.tolist(), factors, strict=True):
                    copy.write_row((tid, k, "[" + ",".join(f"{x:.7g}" for x in vec) + "]", "svd"))
        written += len(keys)
    return written
