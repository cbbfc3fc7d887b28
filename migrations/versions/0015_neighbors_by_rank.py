"""reco.feature_neighbors by rank: ItemCF reads each of a user's features' strongest rows (an index
range on rank, setting itemcf_rows), not all of them.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX feature_neighbors_tenant_id_feature_key_rank_idx "
        "ON reco.feature_neighbors (tenant_id, feature_key, rank)"
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
