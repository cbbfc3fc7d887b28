"""Analysts' tenants: which database role (or group) reads which tenant's rows. The roles, the
privileges and the row-level security policies keyed on this table are in sql/095_security.sql.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE reco.analyst_tenants (
    tenant_id  int NOT NULL REFERENCES reco.tenants ON DELETE CASCADE,
    role_name  name NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT analyst_tenants_pkey PRIMARY KEY (tenant_id, role_name)
);
CREATE INDEX analyst_tenants_role ON reco.analyst_tenants (role_name);
COMMENT ON TABLE reco.analyst_tenants IS
    'the tenants an analyst role reads: a member of reco_analyst sees the rows of the tenants mapped to it '
    'or to a role it is a member of (reco.grant_analyst, `reco analysts grant`)';
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
