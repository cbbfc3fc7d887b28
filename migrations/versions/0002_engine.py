"""Engine: neighbours, stats, priors, embeddings, user vectors, exposures, bandits, jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE reco.feature_neighbors (
    tenant_id    int NOT NULL,
    feature_key  int NOT NULL,
    neighbor_key int NOT NULL,
    score        float8 NOT NULL,
    source       text NOT NULL CONSTRAINT feature_neighbors_source_check CHECK (source IN ('cf', 'content')),
    rank         smallint NOT NULL,
    CONSTRAINT feature_neighbors_pkey PRIMARY KEY (tenant_id, feature_key, neighbor_key)
);

CREATE TABLE reco.feature_cooccurrence (
    tenant_id   int NOT NULL,
    feature_key int NOT NULL,
    other_key   int NOT NULL,
    dot         float8 NOT NULL,
    users       int NOT NULL,
    CONSTRAINT feature_cooccurrence_pkey PRIMARY KEY (tenant_id, feature_key, other_key)
);

CREATE TABLE reco.segments (
    tenant_id int NOT NULL,
    attribute text NOT NULL,
    value     text NOT NULL,
    users     int NOT NULL,
    CONSTRAINT segments_pkey PRIMARY KEY (tenant_id, attribute, value)
);

CREATE TABLE reco.feature_stats (
    tenant_id    int NOT NULL,
    attribute    text NOT NULL,
    value        text NOT NULL,
    feature_key  int NOT NULL,
    users        int NOT NULL,
    uses         bigint NOT NULL,
    successes    bigint NOT NULL,
    failures     bigint NOT NULL,
    popularity   float8 NOT NULL,
    success_rate float8 NOT NULL,
    CONSTRAINT feature_stats_pkey PRIMARY KEY (tenant_id, attribute, value, feature_key)
);
CREATE INDEX feature_stats_tenant_id_attribute_value_popularity_idx
    ON reco.feature_stats (tenant_id, attribute, value, popularity DESC);

CREATE TABLE reco.cohort_priors (
    tenant_id   int NOT NULL,
    attribute   text NOT NULL,
    value       text NOT NULL,
    feature_key int NOT NULL,
    prob        float8 NOT NULL,
    CONSTRAINT cohort_priors_pkey PRIMARY KEY (tenant_id, attribute, value, feature_key)
);
CREATE INDEX cohort_priors_tenant_id_attribute_value_prob_idx
    ON reco.cohort_priors (tenant_id, attribute, value, prob DESC);

CREATE TABLE reco.feature_embeddings (
    tenant_id   int NOT NULL,
    feature_key int NOT NULL,
    content     vector(64) NOT NULL,
    source      text NOT NULL CONSTRAINT feature_embeddings_source_check CHECK (source IN ('client', 'content')),
    CONSTRAINT feature_embeddings_pkey PRIMARY KEY (tenant_id, feature_key)
);

CREATE TABLE reco.feature_factors (
    tenant_id   int NOT NULL,
    feature_key int NOT NULL,
    factor      vector(64) NOT NULL,
    method      text NOT NULL CONSTRAINT feature_factors_method_check
                CHECK (method IN ('exact', 'svd', 'random')),
    CONSTRAINT feature_factors_pkey PRIMARY KEY (tenant_id, feature_key)
);

CREATE TABLE reco.user_vectors (
    tenant_id int NOT NULL,
    user_key  int NOT NULL,
    embedding vector(64) NOT NULL,
    CONSTRAINT user_vectors_pkey PRIMARY KEY (tenant_id, user_key)
);
CREATE INDEX user_vectors_embedding_idx ON reco.user_vectors USING hnsw (embedding vector_cosine_ops);

CREATE TABLE reco.exposures (
    tenant_id   int NOT NULL,
    exposure_id bigint GENERATED ALWAYS AS IDENTITY,
    request_id  text NOT NULL,
    user_key    int NOT NULL,
    feature_key int NOT NULL,
    rank        smallint NOT NULL,
    segment     text NOT NULL,
    variant     text,
    shown_at    timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz,
    CONSTRAINT exposures_pkey PRIMARY KEY (tenant_id, exposure_id)
);
CREATE INDEX exposures_tenant_id_user_key_feature_key_shown_at_idx
    ON reco.exposures (tenant_id, user_key, feature_key, shown_at);

CREATE TABLE reco.bandit_arms (
    tenant_id   int NOT NULL,
    segment     text NOT NULL,
    feature_key int NOT NULL,
    alpha       float8 NOT NULL DEFAULT 1,
    beta        float8 NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT bandit_arms_pkey PRIMARY KEY (tenant_id, segment, feature_key)
);

CREATE TABLE reco.jobs (
    name        text CONSTRAINT jobs_pkey PRIMARY KEY,
    procedure   text NOT NULL,
    schedule    text NOT NULL,
    depends_on  text[] NOT NULL DEFAULT '{}',
    position    int NOT NULL,
    description text NOT NULL
);

CREATE TABLE reco.job_runs (
    run_id        bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT job_runs_pkey PRIMARY KEY,
    job           text NOT NULL,
    tenant        text,
    status        text NOT NULL CONSTRAINT job_runs_status_check
                  CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    rows_written  bigint,
    message       text,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at   timestamptz
);
CREATE INDEX job_runs_job_started_at_idx ON reco.job_runs (job, started_at DESC);
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
