"""Offline evaluation: evaluation scopes (tenants that hold a leave-one-out copy of another
tenant's data), held-out pairs, per-user ranks, and the stored runs and results.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE reco.tenants ADD COLUMN evaluation_of int
    CONSTRAINT tenants_evaluation_of_fkey REFERENCES reco.tenants ON DELETE CASCADE;

ALTER TABLE reco.jobs ADD COLUMN in_all boolean NOT NULL DEFAULT true;

CREATE TABLE reco.evaluation_holdouts (
    tenant_id   int NOT NULL,
    user_key    int NOT NULL,
    feature_key int NOT NULL,
    first_at    timestamptz NOT NULL,
    CONSTRAINT evaluation_holdouts_pkey PRIMARY KEY (tenant_id, user_key)
);

CREATE UNLOGGED TABLE reco.evaluation_ranks (
    tenant_id int NOT NULL,
    model     text NOT NULL,
    user_key  int NOT NULL,
    hit_rank  smallint,
    items     int[] NOT NULL,
    CONSTRAINT evaluation_ranks_pkey PRIMARY KEY (tenant_id, model, user_key)
);

CREATE TABLE reco.evaluation_runs (
    run_id      bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT evaluation_runs_pkey PRIMARY KEY,
    tenant      text NOT NULL,
    kind        text NOT NULL DEFAULT 'evaluate'
                CONSTRAINT evaluation_runs_kind_check CHECK (kind IN ('evaluate', 'grid')),
    k           int NOT NULL,
    users       int NOT NULL,
    settings    jsonb NOT NULL,
    options     jsonb NOT NULL DEFAULT '{}',
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX evaluation_runs_tenant_started_at_idx ON reco.evaluation_runs (tenant, started_at DESC);

CREATE TABLE reco.evaluation_results (
    run_id   bigint NOT NULL CONSTRAINT evaluation_results_run_id_fkey
             REFERENCES reco.evaluation_runs ON DELETE CASCADE,
    model    text NOT NULL,
    users    int NOT NULL,
    hit_rate float8 NOT NULL,
    mrr      float8 NOT NULL,
    ndcg     float8 NOT NULL,
    coverage float8 NOT NULL,
    CONSTRAINT evaluation_results_pkey PRIMARY KEY (run_id, model)
);
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
