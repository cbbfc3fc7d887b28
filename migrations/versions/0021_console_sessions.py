"""Console sessions, kept by the server: the browser holds a random token (pgs_ and 64 hex digits), the
table its SHA-256, with an absolute expiry and an idle timeout; ended by logout and by the revocation
of the key that opened it (sql/072_console_sessions.sql). The console cookie was the key's SHA-256
itself, which anyone with a copy of api_keys could forge and nothing expired (issue 24).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-08
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE reco.console_sessions (
    session_id   bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT console_sessions_pkey PRIMARY KEY,
    token_hash   bytea NOT NULL CONSTRAINT console_sessions_token_hash_key UNIQUE,
    tenant_id    int NOT NULL CONSTRAINT console_sessions_tenant_id_fkey REFERENCES reco.tenants ON DELETE CASCADE,
    key_id       bigint NOT NULL CONSTRAINT console_sessions_key_id_fkey REFERENCES reco.api_keys ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    idle_timeout interval NOT NULL CONSTRAINT console_sessions_idle_timeout_check CHECK (idle_timeout > interval '0'),
    ended_at     timestamptz,
    ended_why    text CONSTRAINT console_sessions_ended_why_check CHECK (ended_why IN ('logout', 'revoked')),
    CONSTRAINT console_sessions_ended_check CHECK ((ended_at IS NULL) = (ended_why IS NULL))
);
CREATE INDEX console_sessions_key_id_idx ON reco.console_sessions (key_id) WHERE ended_at IS NULL;
CREATE INDEX console_sessions_tenant_id_expires_at_idx ON reco.console_sessions (tenant_id, expires_at);
COMMENT ON TABLE reco.console_sessions IS
    'the web console''s logins: the SHA-256 of each session token (never the token), its expiry, idle timeout and end';
COMMENT ON COLUMN reco.console_sessions.token_hash IS
    'SHA-256 of the token the browser holds (pgs_ and 64 hex digits): a copy of this column opens nothing';
COMMENT ON COLUMN reco.console_sessions.idle_timeout IS
    'the session ends when unused for this long (last_seen_at + idle_timeout)';
COMMENT ON COLUMN reco.console_sessions.ended_why IS 'logout, or revoked (its API key was revoked)';
"""
    )


def downgrade() -> None:
    raise NotImplementedError("pgreco migrations are forward-only")
