"""Hardening: reco.setting_repairs, the log of stored setting values that failed their rule when the rules
(sql/011_setting_rules.sql) arrived or changed, and what each became (normalised, or the default).
reco.repair_stored_settings() (sql/090_setting_repair.sql) fills it at every `reco migrate`.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-08
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE reco.setting_repairs (
    repair_id   bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT setting_repairs_pkey PRIMARY KEY,
    tenant_id   int NOT NULL CONSTRAINT setting_repairs_tenant_id_fkey REFERENCES reco.tenants ON DELETE CASCADE,
    place       text NOT NULL,
    key         text NOT NULL,
    stored      jsonb,
    repaired    jsonb,
    reason      text NOT NULL,
    repaired_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX setting_repairs_tenant_id_idx ON reco.setting_repairs (tenant_id, repaired_at);
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
