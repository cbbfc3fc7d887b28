"""API keys: stored hashed (SHA-256), each bound to a tenant.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE reco.api_keys (
    key_id     bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT api_keys_pkey PRIMARY KEY,
    tenant_id  int NOT NULL CONSTRAINT api_keys_tenant_id_fkey REFERENCES reco.tenants ON DELETE CASCADE,
    name       text NOT NULL DEFAULT '',
    prefix     text NOT NULL,
    key_hash   bytea NOT NULL CONSTRAINT api_keys_key_hash_key UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant_id_idx ON reco.api_keys (tenant_id);
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
