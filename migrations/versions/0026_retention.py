# ruff: noqa: E501  (DDL lines)
"""Retention: the actions a tenant may take to win a user back (reco.retention_actions), the do-not-contact
list, the lists themselves (reco.retention_lists, one per call of reco.retention_list, with the holdout's
experiment) and their contacts (reco.retention_contacts: who, which action, expected profit, held out or
treated, and once matured whether the user stayed). Functions live in sql/087_retention.sql and
sql/088_retention_loop.sql.

Revision ID: 0026
Revises: 0024 (the lead re-chains it after 0025 at merge)
Create Date: 2026-12-08
"""

from alembic import op

revision = "0026"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
-- what a tenant can do to win a user back; no row for a tenant: the product brief's defaults
-- (coupon 5.00 / 30 %, sms 0.05 / 10 %, push 0 / 3 %: reco.retention_default_actions())
CREATE TABLE reco.retention_actions (
    tenant_id     int NOT NULL CONSTRAINT retention_actions_tenant_id_fkey REFERENCES reco.tenants ON DELETE CASCADE,
    action        text NOT NULL CONSTRAINT retention_actions_action_check CHECK (action ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    cost          numeric NOT NULL CONSTRAINT retention_actions_cost_check CHECK (cost >= 0 AND cost <= 1000000),
    -- the assumed share of would-be churners the action wins back, until the loop has measured it
    win_back_rate float8 NOT NULL CONSTRAINT retention_actions_win_back_rate_check CHECK (win_back_rate BETWEEN 0 AND 1),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT retention_actions_pkey PRIMARY KEY (tenant_id, action)
);

CREATE TABLE reco.retention_do_not_contact (
    tenant_id int NOT NULL CONSTRAINT retention_do_not_contact_tenant_id_fkey REFERENCES reco.tenants ON DELETE CASCADE,
    user_key  int NOT NULL,
    reason    text NOT NULL DEFAULT '' CONSTRAINT retention_do_not_contact_reason_check CHECK (length(reason) <= 500),
    added_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT retention_do_not_contact_pkey PRIMARY KEY (tenant_id, user_key),
    CONSTRAINT retention_do_not_contact_user_fkey FOREIGN KEY (tenant_id, user_key)
        REFERENCES reco.users (tenant_id, user_key) ON DELETE CASCADE
);

-- one row per list: what it was computed with, its holdout (an experiment: holdout vs treated) and when
-- its outcome is known (matures_at = created_at + the retention window)
CREATE TABLE reco.retention_lists (
    list_id         int GENERATED ALWAYS AS IDENTITY CONSTRAINT retention_lists_pkey PRIMARY KEY,
    tenant_id       int NOT NULL CONSTRAINT retention_lists_tenant_id_fkey REFERENCES reco.tenants ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    budget          numeric NOT NULL CONSTRAINT retention_lists_budget_check CHECK (budget >= 0),
    scores_as_of    date,
    -- per action: cost, assumed rate, and per tier the rate used and its source (assumed or measured)
    actions         jsonb NOT NULL DEFAULT '{}',
    settings        jsonb NOT NULL DEFAULT '{}',
    holdout         float8 NOT NULL CONSTRAINT retention_lists_holdout_check CHECK (holdout >= 0 AND holdout < 1),
    salt            text NOT NULL,
    experiment_id   int CONSTRAINT retention_lists_experiment_id_fkey REFERENCES reco.experiments ON DELETE SET NULL,
    users           int NOT NULL DEFAULT 0,
    treated         int NOT NULL DEFAULT 0,
    held_out        int NOT NULL DEFAULT 0,
    spent           numeric NOT NULL DEFAULT 0,
    expected_profit numeric NOT NULL DEFAULT 0,
    matures_at      timestamptz NOT NULL,
    measured_at     timestamptz
);
CREATE INDEX retention_lists_tenant_id_created_at_idx ON reco.retention_lists (tenant_id, created_at DESC);

-- one row per user on a list; held_out users were picked like the others but not contacted (the control)
CREATE TABLE reco.retention_contacts (
    tenant_id       int NOT NULL,
    list_id         int NOT NULL CONSTRAINT retention_contacts_list_id_fkey REFERENCES reco.retention_lists ON DELETE CASCADE,
    user_key        int NOT NULL,
    rank            int NOT NULL,
    action          text NOT NULL,
    tier            text NOT NULL,
    probability     float8 NOT NULL,
    value           numeric NOT NULL,
    win_back_rate   float8 NOT NULL,
    rate_source     text NOT NULL CONSTRAINT retention_contacts_rate_source_check CHECK (rate_source IN ('assumed', 'measured')),
    cost            numeric NOT NULL,
    expected_profit numeric NOT NULL,
    held_out        boolean NOT NULL,
    contacted_at    timestamptz NOT NULL,
    -- NULL until the list matures: an activity event in (contacted_at, matures_at]
    retained        boolean,
    CONSTRAINT retention_contacts_pkey PRIMARY KEY (list_id, user_key),
    -- erasing a user (reco.erase_user) erases their contacts
    CONSTRAINT retention_contacts_user_fkey FOREIGN KEY (tenant_id, user_key)
        REFERENCES reco.users (tenant_id, user_key) ON DELETE CASCADE
);
CREATE INDEX retention_contacts_user_idx ON reco.retention_contacts (tenant_id, user_key, contacted_at DESC);
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
