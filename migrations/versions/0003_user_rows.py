"""User vectors carry the user's row of R (feature keys and strengths), so UserCF reads the
nearest users' rows with the HNSW result instead of probing reco.interactions once per neighbour.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE reco.user_vectors
    ADD COLUMN feature_keys int[] NOT NULL DEFAULT '{}',
    ADD COLUMN strengths real[] NOT NULL DEFAULT '{}';
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
