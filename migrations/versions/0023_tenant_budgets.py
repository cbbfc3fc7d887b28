"""reco.tenant_budgets: a tenant's own budget of what is expensive for the API (write volume, concurrent
statements per pool, console requests), overriding the API process's defaults (RECO_TENANT_*) column by
column: NULL means the default, 0 means unlimited. Set with reco.set_tenant_budget (`reco tenants budget`);
the API reads it with reco.api_tenant_budget and keeps it for a few seconds (app.api.budgets).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-08
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE reco.tenant_budgets (
    tenant_id int NOT NULL,
    events_per_s double precision,
    bytes_per_s double precision,
    read_statements int,
    write_statements int,
    console_per_s double precision,
    console_statements int,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tenant_budgets_pkey PRIMARY KEY (tenant_id),
    CONSTRAINT tenant_budgets_tenant_id_fkey FOREIGN KEY (tenant_id)
        REFERENCES reco.tenants (tenant_id) ON DELETE CASCADE,
    CONSTRAINT tenant_budgets_events_per_s_check CHECK (events_per_s >= 0 AND events_per_s < 'Infinity'),
    CONSTRAINT tenant_budgets_bytes_per_s_check CHECK (bytes_per_s >= 0 AND bytes_per_s < 'Infinity'),
    CONSTRAINT tenant_budgets_read_statements_check CHECK (read_statements >= 0),
    CONSTRAINT tenant_budgets_write_statements_check CHECK (write_statements >= 0),
    CONSTRAINT tenant_budgets_console_per_s_check CHECK (console_per_s >= 0 AND console_per_s < 'Infinity'),
    CONSTRAINT tenant_budgets_console_statements_check CHECK (console_statements >= 0)
);
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
