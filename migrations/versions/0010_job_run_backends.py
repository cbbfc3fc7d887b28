"""A job run records the backend that runs it (pid and backend start time), so that a run whose backend
died (pg_terminate_backend, OOM kill, server crash) can be told apart from one still in progress and
shown as failed (reco.fail_orphaned_job_runs, called by reco.run_job and the listing).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE reco.job_runs
    ADD COLUMN backend_pid int,
    ADD COLUMN backend_start timestamptz;
CREATE INDEX job_runs_running_idx ON reco.job_runs (run_id) WHERE status = 'running';
COMMENT ON COLUMN reco.job_runs.backend_pid IS
    'pg_backend_pid() of the session running the job (with backend_start it identifies the backend; '
    'NULL for runs logged before 0010 and for skipped runs)';
COMMENT ON COLUMN reco.job_runs.backend_start IS
    'pg_stat_activity.backend_start of that session: tells a reused pid apart';
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
