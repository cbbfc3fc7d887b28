"""Experiments: scenarios (named setting overrides), experiments and their variants, tenant-defined
metrics, and what an exposure records of them (scenario, experiment, interleaving sides);
exposures of ids not yet known are kept under the id instead of creating a user; a default
partition for old events; per-user daily use counts for /plan.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE reco.scenarios (
    tenant_id   int NOT NULL REFERENCES reco.tenants ON DELETE CASCADE,
    name        text NOT NULL,
    overrides   jsonb NOT NULL DEFAULT '{}',
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT scenarios_pkey PRIMARY KEY (tenant_id, name)
);

CREATE TABLE reco.experiments (
    experiment_id     int GENERATED ALWAYS AS IDENTITY CONSTRAINT experiments_pkey PRIMARY KEY,
    tenant_id         int NOT NULL REFERENCES reco.tenants ON DELETE CASCADE,
    name              text NOT NULL,
    scenario          text NOT NULL DEFAULT 'default',
    kind              text NOT NULL DEFAULT 'ab' CHECK (kind IN ('ab', 'interleave')),
    status            text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'running', 'stopped')),
    traffic           float8 NOT NULL DEFAULT 1 CHECK (traffic > 0 AND traffic <= 1),
    salt              text NOT NULL,
    -- the slice [ns_start, ns_start + traffic) of the scenario's hash space, given at start so that
    -- experiments running in one scenario never share a user
    ns_start          float8,
    primary_metric    text NOT NULL DEFAULT 'clicked',
    secondary_metrics text[] NOT NULL DEFAULT '{}',
    guardrail_metrics text[] NOT NULL DEFAULT '{}',
    oec               jsonb NOT NULL DEFAULT '{}',
    looks             int NOT NULL DEFAULT 1 CHECK (looks BETWEEN 1 AND 20),
    planned_users     int CHECK (planned_users > 0),
    alpha             float8 NOT NULL DEFAULT 0.05 CHECK (alpha > 0 AND alpha < 0.5),
    pre_period        interval NOT NULL DEFAULT '14 days',
    description       text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    stopped_at        timestamptz,
    CONSTRAINT experiments_tenant_id_name_key UNIQUE (tenant_id, name)
);
CREATE INDEX experiments_running_idx ON reco.experiments (tenant_id, scenario) WHERE status = 'running';

CREATE TABLE reco.experiment_variants (
    tenant_id     int NOT NULL,
    experiment_id int NOT NULL REFERENCES reco.experiments ON DELETE CASCADE,
    position      smallint NOT NULL,
    name          text NOT NULL,
    weight        float8 NOT NULL CHECK (weight > 0),
    overrides     jsonb NOT NULL DEFAULT '{}',
    CONSTRAINT experiment_variants_pkey PRIMARY KEY (experiment_id, position),
    CONSTRAINT experiment_variants_experiment_id_name_key UNIQUE (experiment_id, name)
);

CREATE TABLE reco.metrics (
    tenant_id        int NOT NULL REFERENCES reco.tenants ON DELETE CASCADE,
    name             text NOT NULL,
    event_kind       text NOT NULL,
    prop             text,
    agg              text NOT NULL CHECK (agg IN ('any', 'count', 'sum', 'mean')),
    higher_is_better boolean NOT NULL DEFAULT true,
    description      text NOT NULL DEFAULT '',
    CONSTRAINT metrics_pkey PRIMARY KEY (tenant_id, name)
);

ALTER TABLE reco.exposures ADD COLUMN scenario text, ADD COLUMN experiment_id int, ADD COLUMN sides smallint[];

-- a read never creates a user: what is shown to an id not (yet) known is recorded under the id,
-- and attached to the user when the id's first event or upsert creates it
ALTER TABLE reco.exposures ALTER COLUMN user_key DROP NOT NULL, ADD COLUMN user_id text,
    ADD CONSTRAINT exposures_user_check CHECK ((user_key IS NULL) <> (user_id IS NULL));
CREATE INDEX exposures_pending_user_idx ON reco.exposures (tenant_id, user_id) WHERE user_key IS NULL;

-- bounded history: events older than the monthly partitions' horizon go to one default partition
-- (a client could otherwise create a partition per month back to 1970, and every later statement
-- on events pays for each)
CREATE TABLE reco.events_default PARTITION OF reco.events DEFAULT;

-- /plan reads a user's uses per day (at most plan_window_days rows), maintained by ingest, not
-- their raw events
CREATE TABLE reco.user_daily_uses (
    tenant_id int NOT NULL,
    user_key  int NOT NULL,
    day       date NOT NULL,
    uses      int NOT NULL,
    paid_uses int NOT NULL,
    CONSTRAINT user_daily_uses_pkey PRIMARY KEY (tenant_id, user_key, day)
);
INSERT INTO reco.user_daily_uses (tenant_id, user_key, day, uses, paid_uses)
SELECT e.tenant_id, e.user_key, (e.occurred_at AT TIME ZONE 'UTC')::date, count(*),
       count(*) FILTER (WHERE f.requires_paid)
FROM reco.events e
JOIN reco.features f ON f.tenant_id = e.tenant_id AND f.feature_key = e.feature_key
WHERE e.occurred_at >= now() - interval '400 days'
GROUP BY 1, 2, 3;
CREATE INDEX exposures_experiment_idx ON reco.exposures (experiment_id, user_key, shown_at)
    WHERE experiment_id IS NOT NULL;
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
