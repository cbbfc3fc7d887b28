"""Engine v2: neighbour models computed from the interactions without storing RᵀR, Python steps
that pg_cron cannot run left in a queue for `reco jobs loop`, content neighbours by k-NN.

- reco.feature_cooccurrence goes: it held every pair of features used together (1.4M rows for
  MovieLens-100K, written on every run); the neighbour models aggregate the pairs on the fly and
  keep only the top K, and the SVD of the embeddings job reads the interactions.
- reco.neighbor_weights: unlogged staging for neighbour weights computed in Python (EASE), which
  the feature_neighbors job moves into reco.feature_neighbors.
- reco.job_queue: work a job could not do inside the database (EASE, SVD: numpy) when pg_cron ran
  it; `reco jobs loop` picks it up. job_runs gets the status 'deferred' for such runs.
- reco.feature_factors.computed_at, so a run that reuses older SVD factors can say how old.
- reco.feature_neighbors by target: a recommendation's "because" reads the target's own ≤ K rows.
- an HNSW index on reco.feature_embeddings.content: content neighbours of little-used features are
  found by k-NN instead of comparing every feature with every other.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
DROP TABLE reco.feature_cooccurrence;

CREATE UNLOGGED TABLE reco.neighbor_weights (
    tenant_id    int NOT NULL,
    feature_key  int NOT NULL,
    neighbor_key int NOT NULL,
    score        float8 NOT NULL,
    CONSTRAINT neighbor_weights_pkey PRIMARY KEY (tenant_id, feature_key, neighbor_key)
);

CREATE TABLE reco.job_queue (
    tenant_id    int NOT NULL,
    job          text NOT NULL,
    reason       text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_queue_pkey PRIMARY KEY (tenant_id, job)
);

ALTER TABLE reco.job_runs DROP CONSTRAINT job_runs_status_check;
ALTER TABLE reco.job_runs ADD CONSTRAINT job_runs_status_check
    CHECK (status IN ('running', 'succeeded', 'deferred', 'failed', 'skipped'));

ALTER TABLE reco.feature_factors ADD COLUMN computed_at timestamptz NOT NULL DEFAULT now();

CREATE INDEX feature_embeddings_content_idx ON reco.feature_embeddings USING hnsw (content vector_cosine_ops);

CREATE INDEX feature_neighbors_tenant_id_neighbor_key_idx ON reco.feature_neighbors (tenant_id, neighbor_key);
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
