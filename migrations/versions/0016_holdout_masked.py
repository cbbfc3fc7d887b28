"""Evaluation holdouts of the second fold: the feature held out is a user's second most recent
adoption, and the most recent one (masked_key) is left out with all its events, so the tune job can
confirm an inconclusive comparison on a second holdout (sql/065_tune.sql).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE reco.evaluation_holdouts ADD COLUMN masked_key int")


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
