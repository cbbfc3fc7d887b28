-- The web console's sessions (table reco.console_sessions, migration 0021).
--
-- Logging in with an API key (reco.api_console_login) makes a random token, 'pgs_' and 64 hex digits
-- (244 random bits, as API keys), that the browser keeps in an HttpOnly cookie; the table keeps its
-- SHA-256 only, with an absolute expiry and an idle timeout. A session ends at logout
-- (reco.api_console_logout), when its key is revoked (reco.revoke_api_key), past its expiry, or
-- when unused for its idle timeout. Nothing in it derives from the key: a copy of api_keys or of
-- this table opens no console. The console's page functions (reco.api_console_<page>, generated in
-- sql/095_security.sql) take the token, or an API key (Authorization: Bearer, for scripts), and
-- check it here (reco._console_auth). docs/security.md has the whole model.

-- The tenant of a console credential: a live session's token, or an API key; else
-- invalid_authorization_specification. Reads only (it runs in the console's read-only pages).
CREATE OR REPLACE FUNCTION reco._console_auth(p_auth text, OUT tenant_id int, OUT slug text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT starts_with(coalesce(p_auth, ''), 'pgs_') THEN
        SELECT k.tenant_id, k.slug INTO tenant_id, slug FROM reco._api_key(p_auth) AS k;
        RETURN;
    END IF;
    IF length(p_auth) = 68 THEN
        SELECT t.tenant_id, t.slug INTO tenant_id, slug
        FROM reco.console_sessions s
        JOIN reco.api_keys k ON k.key_id = s.key_id AND k.revoked_at IS NULL
        JOIN reco.tenants t ON t.tenant_id = s.tenant_id
        WHERE s.token_hash = sha256(convert_to(p_auth, 'UTF8')) AND s.ended_at IS NULL
          AND s.expires_at > now() AND s.last_seen_at + s.idle_timeout > now();
    END IF;
    IF tenant_id IS NULL THEN
        RAISE EXCEPTION 'the console session has ended (logged out, expired, idle too long, or its key revoked)'
            USING ERRCODE = 'invalid_authorization_specification', HINT = 'Log in again at /console/login.';
    END IF;
END $$;
COMMENT ON FUNCTION reco._console_auth(text) IS
    'internal: the tenant of a console session token (pgs_...) that is live, or of an API key; 28000 otherwise';

CREATE OR REPLACE FUNCTION reco.api_console_login(p_key text, p_lifetime interval, p_idle interval)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    _key record := reco._api_key(p_key);
    _token text := 'pgs_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
BEGIN
    IF p_lifetime IS NULL OR p_lifetime < interval '1 minute' OR p_lifetime > interval '30 days' THEN
        RAISE EXCEPTION 'a console session''s lifetime must be 1 minute to 30 days, got %', coalesce(p_lifetime::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Set RECO_CONSOLE_SESSION_HOURS (default 12).';
    END IF;
    IF p_idle IS NULL OR p_idle < interval '1 minute' OR p_idle > p_lifetime THEN
        RAISE EXCEPTION 'a console session''s idle timeout must be 1 minute to its lifetime (%), got %',
                        p_lifetime, coalesce(p_idle::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Set RECO_CONSOLE_IDLE_MINUTES (default 30).';
    END IF;
    -- the tenant's sessions over for a day go (the table stays the size of the recent logins)
    DELETE FROM reco.console_sessions
    WHERE tenant_id = _key.tenant_id
      AND (ended_at < now() - interval '1 day' OR expires_at < now() - interval '1 day'
           OR last_seen_at + idle_timeout < now() - interval '1 day');
    INSERT INTO reco.console_sessions (token_hash, tenant_id, key_id, expires_at, idle_timeout)
    VALUES (sha256(convert_to(_token, 'UTF8')), _key.tenant_id, _key.key_id, now() + p_lifetime, p_idle);
    RETURN _token;
END $$;
COMMENT ON FUNCTION reco.api_console_login(text, interval, interval) IS
$c$open a console session with an API key: returns its token (pgs_ and 64 hex digits), shown this once; only its
SHA-256 is stored. It ends at logout, when the key is revoked, after p_lifetime, or when unused for p_idle.
Invalid key: 28000. Example: SELECT reco.api_console_login('pgr_3f9a...', '12 hours', '30 minutes');$c$;

CREATE OR REPLACE FUNCTION reco.api_console_session(p_auth text)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    _slug text := (reco._console_auth(p_auth)).slug;
BEGIN
    IF starts_with(p_auth, 'pgs_') THEN
        UPDATE reco.console_sessions SET last_seen_at = now()
        WHERE token_hash = sha256(convert_to(p_auth, 'UTF8'));
    END IF;
    RETURN _slug;
END $$;
COMMENT ON FUNCTION reco.api_console_session(text) IS
$c$check a console credential (a session token, or an API key) and return its tenant; a session's idle clock starts
again. Ended, expired, idle or unknown: 28000. The console calls it before each page (the pages read only).$c$;

CREATE OR REPLACE FUNCTION reco.api_console_logout(p_session text)
RETURNS boolean
LANGUAGE sql AS $$
    UPDATE reco.console_sessions SET ended_at = now(), ended_why = 'logout'
    WHERE token_hash = sha256(convert_to(p_session, 'UTF8')) AND ended_at IS NULL
    RETURNING true
$$;
COMMENT ON FUNCTION reco.api_console_logout(text) IS
    'end a console session (its token): true, or NULL when it was not live; its cookie opens nothing afterwards';
