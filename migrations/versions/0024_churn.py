"""Churn: the model registry (reco.models), the logistic regression's coefficients as rows
(reco.model_coefficients, so one user is scored live in SQL) and the scores per snapshot day
(reco.churn_scores). Functions, settings and jobs live in sql/ (churn files).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-08
"""

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
-- one row per trained model version of a tenant; at most one active per (tenant, purpose)
CREATE TABLE reco.models (
    model_id     int GENERATED ALWAYS AS IDENTITY CONSTRAINT models_pkey PRIMARY KEY,
    tenant_id    int NOT NULL CONSTRAINT models_tenant_id_fkey REFERENCES reco.tenants ON DELETE CASCADE,
    purpose      text NOT NULL DEFAULT 'churn' CONSTRAINT models_purpose_check CHECK (purpose IN ('churn')),
    version      int NOT NULL CONSTRAINT models_version_check CHECK (version > 0),
    kind         text NOT NULL CONSTRAINT models_kind_check CHECK (kind IN ('logistic', 'lightgbm')),
    trained_at   timestamptz NOT NULL DEFAULT now(),
    -- the definitions it was trained with: churn_window_days, observation_days, activity_kinds,
    -- snapshot_every_days, min_history_days, the snapshot days of training and validation
    windows      jsonb NOT NULL DEFAULT '{}',
    features     text[] NOT NULL,
    -- validation on the newest matured snapshots: auc, brier, calibration table, rows, churners
    metrics      jsonb NOT NULL DEFAULT '{}',
    -- logistic: means, scales, intercept, l2 (coefficients in reco.model_coefficients);
    -- lightgbm: the library's version and parameters (the model itself in model_blob)
    params       jsonb NOT NULL DEFAULT '{}',
    model_blob   bytea,
    active       boolean NOT NULL DEFAULT false,
    activated_at timestamptz,
    note         text NOT NULL DEFAULT '',
    CONSTRAINT models_tenant_id_purpose_version_key UNIQUE (tenant_id, purpose, version)
);
CREATE UNIQUE INDEX models_one_active_idx ON reco.models (tenant_id, purpose) WHERE active;

-- the logistic regression's terms: score = 1 / (1 + exp(-(intercept + sum coef * (x - mean) / scale)))
CREATE TABLE reco.model_coefficients (
    tenant_id   int NOT NULL,
    model_id    int NOT NULL CONSTRAINT model_coefficients_model_id_fkey REFERENCES reco.models ON DELETE CASCADE,
    feature     text NOT NULL,
    mean        float8 NOT NULL,
    scale       float8 NOT NULL CONSTRAINT model_coefficients_scale_check CHECK (scale > 0),
    coef        float8 NOT NULL,
    CONSTRAINT model_coefficients_pkey PRIMARY KEY (model_id, feature)
);

-- scores per snapshot day (as_of: features read events before this day); the latest as_of is the
-- current score, older days feed monitoring (AUC on newly matured labels, drift)
CREATE TABLE reco.churn_scores (
    tenant_id   int NOT NULL CONSTRAINT churn_scores_tenant_id_fkey REFERENCES reco.tenants ON DELETE CASCADE,
    as_of       date NOT NULL,
    user_key    int NOT NULL,
    model_id    int NOT NULL,
    probability float8 NOT NULL CONSTRAINT churn_scores_probability_check CHECK (probability BETWEEN 0 AND 1),
    tier        text NOT NULL CONSTRAINT churn_scores_tier_check CHECK (tier IN ('high', 'medium', 'low')),
    -- the top reasons: [{"feature": ..., "value": ..., "contribution": ...}], largest first
    reasons     jsonb NOT NULL DEFAULT '[]',
    scored_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT churn_scores_pkey PRIMARY KEY (tenant_id, as_of, user_key)
);
CREATE INDEX churn_scores_user_idx ON reco.churn_scores (tenant_id, user_key, as_of DESC);
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
