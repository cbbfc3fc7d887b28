"""User vectors partitioned by tenant: each tenant's vectors have their own HNSW index, so a
nearest-user search never walks another tenant's graph (a shared index filtered by tenant after
the scan returns fewer neighbours than asked), and the embeddings job rebuilds one tenant's
partition without touching the others.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE reco.user_vectors RENAME TO user_vectors_shared;
ALTER TABLE reco.user_vectors_shared RENAME CONSTRAINT user_vectors_pkey TO user_vectors_shared_pkey;
ALTER INDEX reco.user_vectors_embedding_idx RENAME TO user_vectors_shared_embedding_idx;

CREATE TABLE reco.user_vectors (
    tenant_id    int NOT NULL,
    user_key     int NOT NULL,
    embedding    vector(64) NOT NULL,
    feature_keys int[] NOT NULL DEFAULT '{}',
    strengths    real[] NOT NULL DEFAULT '{}',
    CONSTRAINT user_vectors_pkey PRIMARY KEY (tenant_id, user_key)
) PARTITION BY LIST (tenant_id);
CREATE INDEX user_vectors_embedding_idx ON reco.user_vectors USING hnsw (embedding vector_cosine_ops);

DO $$
DECLARE
    _t int;
BEGIN
    FOR _t IN SELECT DISTINCT tenant_id FROM reco.user_vectors_shared LOOP
        EXECUTE format('CREATE TABLE reco.%I PARTITION OF reco.user_vectors FOR VALUES IN (%s)',
                       'user_vectors_' || _t, _t);
    END LOOP;
END $$;
INSERT INTO reco.user_vectors SELECT tenant_id, user_key, embedding, feature_keys, strengths
FROM reco.user_vectors_shared;
DROP TABLE reco.user_vectors_shared;
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
