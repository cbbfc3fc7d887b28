"""Feature factors by SVD, for catalogs larger than the user-vector dimension (numpy).

The top right-singular vectors of R are the top eigenvectors of the Gram matrix RᵀR, which is
small (features × features) and is the table reco.feature_cooccurrence (written by the
feature_neighbors job, which runs first; computed here if it is empty); projecting a user's row
onto them keeps the user-to-user cosine as well as 64 dimensions can. With ≤ 64 features the
SQL job uses exact one-hot factors and this step does nothing.
"""

from __future__ import annotations

import numpy as np
import psycopg

DIM = 64


def write_svd_factors(conn: psycopg.Connection, tenant: str | None) -> int:
    """Write method='svd' rows to reco.feature_factors for each tenant with > DIM active features.

    ``conn`` returns dict rows (as in jobs.runner)."""
    tenants = conn.execute(
        """SELECT t.tenant_id FROM reco.tenants t
           WHERE (%s::text IS NULL OR t.slug = %s)
             AND (SELECT count(*) FROM reco.features f WHERE f.tenant_id = t.tenant_id AND f.active) > %s""",
        (tenant, tenant, DIM)).fetchall()
    written = 0
    for row in tenants:
        tid = row["tenant_id"]
        keys = [r["feature_key"] for r in conn.execute(
            "SELECT feature_key FROM reco.features WHERE tenant_id = %s AND active ORDER BY feature_key",
            (tid,)).fetchall()]
        index = {k: i for i, k in enumerate(keys)}
        gram = np.zeros((len(keys), len(keys)))
        if not conn.execute("SELECT 1 FROM reco.feature_cooccurrence WHERE tenant_id = %s LIMIT 1",
                            (tid,)).fetchone():
            conn.execute("SELECT reco._refresh_cooccurrence(%s::int)", (tid,))
        cur = conn.execute(
            "SELECT feature_key AS a, other_key AS b, dot FROM reco.feature_cooccurrence WHERE tenant_id = %s",
            (tid,))
        for rec in cur:
            a, b, dot = rec["a"], rec["b"], rec["dot"]
            if a in index and b in index:
                gram[index[a], index[b]] = dot
        _, vecs = np.linalg.eigh(gram)
        factors = vecs[:, ::-1][:, :DIM]  # top DIM eigenvectors, one row per feature
        with conn.transaction():
            conn.execute("DELETE FROM reco.feature_factors WHERE tenant_id = %s", (tid,))
            with conn.cursor().copy(
                    "COPY reco.feature_factors (tenant_id, feature_key, factor, method) FROM STDIN") as copy:
                for k, vec in zip(keys, factors, strict=True):
                    copy.write_row((tid, k, "[" + ",".join(f"{x:.7g}" for x in vec) + "]", "svd"))
        written += len(keys)
    return written
