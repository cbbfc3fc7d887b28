"""UserCF per user, computed by the embeddings job: the nearest-user search (HNSW) runs once per
user and job instead of once per request, which was the largest part of a recommendation's cost.
Partitioned by tenant like reco.user_vectors and rebuilt with it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE reco.usercf_scores (
    tenant_id    int NOT NULL,
    user_key     int NOT NULL,
    feature_keys int[] NOT NULL DEFAULT '{}',
    scores       real[] NOT NULL DEFAULT '{}',
    CONSTRAINT usercf_scores_pkey PRIMARY KEY (tenant_id, user_key)
) PARTITION BY LIST (tenant_id);
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE reco.usercf_scores")
