"""Exposures: one row per request (the features shown, in rank order, and those used after),
instead of one row per feature: a recommendation writes one heap row and two index entries
instead of ten and twenty, which is most of what recording exposures costs per request.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE reco.exposures RENAME TO exposures_per_feature;
ALTER TABLE reco.exposures_per_feature RENAME CONSTRAINT exposures_pkey TO exposures_per_feature_pkey;
ALTER INDEX reco.exposures_tenant_id_user_key_feature_key_shown_at_idx RENAME TO exposures_per_feature_idx;

CREATE TABLE reco.exposures (
    tenant_id    int NOT NULL,
    exposure_id  bigint GENERATED ALWAYS AS IDENTITY,
    request_id   text NOT NULL,
    user_key     int NOT NULL,
    feature_keys int[] NOT NULL,
    segment      text NOT NULL,
    variant      text,
    shown_at     timestamptz NOT NULL DEFAULT now(),
    used_keys    int[] NOT NULL DEFAULT '{}',
    CONSTRAINT exposures_pkey PRIMARY KEY (tenant_id, exposure_id)
);
CREATE INDEX exposures_tenant_id_user_key_shown_at_idx ON reco.exposures (tenant_id, user_key, shown_at);

INSERT INTO reco.exposures (tenant_id, request_id, user_key, feature_keys, segment, variant, shown_at, used_keys)
SELECT tenant_id, request_id, user_key, array_agg(feature_key ORDER BY rank), min(segment), min(variant),
       min(shown_at), coalesce(array_agg(feature_key ORDER BY rank) FILTER (WHERE used_at IS NOT NULL), '{}')
FROM reco.exposures_per_feature
GROUP BY tenant_id, request_id, user_key
ORDER BY min(shown_at);
DROP TABLE reco.exposures_per_feature;
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
