"""The tune job: its trials are evaluation runs of kind 'tune'.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE reco.evaluation_runs DROP CONSTRAINT evaluation_runs_kind_check;
ALTER TABLE reco.evaluation_runs ADD CONSTRAINT evaluation_runs_kind_check
    CHECK (kind IN ('evaluate', 'grid', 'tune'));
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
