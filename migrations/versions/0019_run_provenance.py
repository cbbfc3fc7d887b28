"""Evaluation runs say how they were computed; the tune's decisions have one table.

- reco.evaluation_runs.provenance: the neighbour model the run's scope was built with and by whom
  (SQL or numpy), how the user-vector factors were made, where the ranking ran, which numpy steps
  the caller computed (sql/060_evaluation.sql, reco._evaluation_provenance).
- reco.tune_decisions: one row per stage of a tune (and its floor and final decision): the
  incumbent, the stage's best, the trial kept, the paired gain and its standard error, the fold(s)
  they come from, the settings the stage chose and whether they were applied; the final row names
  what is served (the hybrid, or one component alone when it beat the hybrid: the component floor).
  reco.tune_trials, the console and `reco tune` read "kept", "chosen" and "applied" from here only.

Revision ID: 0019
Revises: 0017
Create Date: 2026-12-08
"""

from alembic import op

revision = "0019"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE reco.evaluation_runs ADD COLUMN provenance jsonb NOT NULL DEFAULT '{}';

CREATE TABLE reco.tune_decisions (
    tenant     text NOT NULL,
    tune       text NOT NULL,
    stage      text NOT NULL,
    position   int NOT NULL,
    incumbent  bigint CONSTRAINT tune_decisions_incumbent_fkey REFERENCES reco.evaluation_runs ON DELETE CASCADE,
    best       bigint CONSTRAINT tune_decisions_best_fkey REFERENCES reco.evaluation_runs ON DELETE CASCADE,
    kept       bigint NOT NULL CONSTRAINT tune_decisions_kept_fkey REFERENCES reco.evaluation_runs ON DELETE CASCADE,
    gain       float8,
    se         float8,
    users      int,
    fold       text NOT NULL CONSTRAINT tune_decisions_fold_check CHECK (fold IN ('holdout', 'holdout+second fold')),
    settings   jsonb NOT NULL DEFAULT '{}',
    applied    boolean NOT NULL DEFAULT false,
    served     text,
    note       text,
    decided_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT tune_decisions_pkey PRIMARY KEY (tenant, tune, stage)
);
CREATE INDEX tune_decisions_kept_idx ON reco.tune_decisions (kept);
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
