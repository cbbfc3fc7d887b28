"""The bandit job counts only the exposures shown since its last run (reco.bandit_state) instead of
recounting every retained exposure, whose number grows with the traffic: a BRIN index on
exposures.shown_at finds them. Exposures are stamped with the time of their insert (see
reco.job_bandit), so that the last count's boundary is exact.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE reco.bandit_state (
    tenant_id      int CONSTRAINT bandit_state_pkey PRIMARY KEY,
    counted_before timestamptz NOT NULL
);
CREATE INDEX exposures_shown_at_idx ON reco.exposures USING brin (shown_at);
"""
    )


def downgrade() -> None:
    op.execute("DROP INDEX reco.exposures_shown_at_idx; DROP TABLE reco.bandit_state")
