"""reco.settings_history: every change of a tenant's settings (who or what, when, the key, the value in
force before and after), written by a trigger on reco.settings (sql/012_settings_guard.sql), so the
experiment report can show what changed under a running experiment and a refused change is never
silently half-applied. reco.feature_factors.method gains 'sql' (factors by subspace iteration in SQL,
for the user vectors when the Python runner's SVD is not there).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE reco.settings_history (
    change_id   bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT settings_history_pkey PRIMARY KEY,
    tenant_id   int NOT NULL CONSTRAINT settings_history_tenant_id_fkey REFERENCES reco.tenants ON DELETE CASCADE,
    key         text NOT NULL,
    old_value   jsonb NOT NULL,
    new_value   jsonb NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  text NOT NULL,
    forced      boolean NOT NULL DEFAULT false,
    reason      text,
    experiments text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX settings_history_tenant_id_changed_at_idx ON reco.settings_history (tenant_id, changed_at);

-- feature factors computed in SQL (subspace iteration, sql/041_sql_factors.sql) when Python is not there
ALTER TABLE reco.feature_factors DROP CONSTRAINT feature_factors_method_check,
    ADD CONSTRAINT feature_factors_method_check CHECK (method IN ('exact', 'svd', 'random', 'sql'));
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
