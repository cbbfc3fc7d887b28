-- The SQL behind the REST API: API keys, and one function per request that authenticates, does
-- the work and returns the response body, so every request is a single round trip.
--
-- A key is 'pgr_' and 64 hex digits; only its SHA-256 is stored. The API passes the bearer key
-- itself and the database hashes it (reco._api_key): reco.api_tenant(key) is the tenant, or SQLSTATE
-- 28000 (HTTP 401). A copy of api_keys.key_hash (a dump, a backup) is no key: these functions hash
-- what they are given, and nothing hashes to a stored hash but its key. (They took the hash until
-- issue 24: whoever read the table could call them.) docs/security.md has the whole model.

-- Legacy: the signatures that took the key's hash (bytea); the generated api_<name> wrappers of
-- sql/095_security.sql drop their own. Remove once every database has migrated past 0021.
DROP FUNCTION IF EXISTS reco.api_tenant(bytea);
DROP FUNCTION IF EXISTS reco.api_serve(bytea, text, text, int, jsonb, text, boolean, boolean);
DROP FUNCTION IF EXISTS reco.api_plan(bytea, text, text);
DROP FUNCTION IF EXISTS reco.api_embedding_dimensions(bytea);
DROP FUNCTION IF EXISTS reco.api_popular(bytea, int);
DROP FUNCTION IF EXISTS reco.api_experiments(bytea);
DROP FUNCTION IF EXISTS reco.api_experiment(bytea, text);
DROP FUNCTION IF EXISTS reco._api_key(bytea);
-- the tenant's degraded list by slug is reco.popular_fallback now: api_popular(text, int) is the key's
DO $$
BEGIN
    IF (SELECT p.proargnames[1] FROM pg_proc p WHERE p.oid = to_regprocedure('reco.api_popular(text, int)')) = 'p_tenant' THEN
        DROP FUNCTION reco.api_popular(text, int);
    END IF;
END $$;

-- ---------------------------------------------------------------------------------------
-- Keys
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.create_api_key(p_tenant text DEFAULT NULL, p_name text DEFAULT '')
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    -- 244 random bits from the server's strong random source (gen_random_uuid, PostgreSQL 13+)
    _key text := 'pgr_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
BEGIN
    IF (SELECT evaluation_of FROM reco.tenants WHERE tenant_id = _tid) IS NOT NULL THEN
        RAISE EXCEPTION 'tenant "%" is an evaluation scope', p_tenant
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Create keys for real tenants.';
    END IF;
    INSERT INTO reco.api_keys (tenant_id, name, prefix, key_hash)
    VALUES (_tid, coalesce(p_name, ''), left(_key, 12), sha256(convert_to(_key, 'UTF8')));
    RETURN _key;
END $$;
COMMENT ON FUNCTION reco.create_api_key(text, text) IS
$c$create an API key for a tenant and return it: it is shown this once (only its SHA-256 is stored).
Example: SELECT reco.create_api_key('default', 'web app');$c$;

CREATE OR REPLACE FUNCTION reco.revoke_api_key(p_prefix text)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    _n int;
    _ended int;
BEGIN
    IF p_prefix IS NULL OR length(p_prefix) < 8 THEN
        RAISE EXCEPTION 'give at least the first 8 characters of the key'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'SELECT prefix, name FROM reco.api_keys; lists them.';
    END IF;
    -- 8 to 11 characters: the keys whose stored prefix (12) starts with them, if only one does
    -- (it revoked nothing before: the comparison was with the whole stored prefix)
    IF length(p_prefix) < 12 AND (SELECT count(*) FROM reco.api_keys
                                  WHERE revoked_at IS NULL AND starts_with(prefix, p_prefix)) > 1 THEN
        RAISE EXCEPTION 'several keys start with "%"', p_prefix
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give more of the key (its first 12 characters name one key): SELECT prefix, name FROM reco.api_keys;';
    END IF;
    -- the console sessions the key opened end with it (reco._console_auth also checks the key)
    WITH revoked AS (
        UPDATE reco.api_keys SET revoked_at = now()
        WHERE revoked_at IS NULL AND starts_with(prefix, left(p_prefix, 12))
        RETURNING key_id
    ), ended AS (
        UPDATE reco.console_sessions s SET ended_at = now(), ended_why = 'revoked'
        FROM revoked r WHERE s.key_id = r.key_id AND s.ended_at IS NULL
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM revoked), (SELECT count(*) FROM ended) INTO _n, _ended;
    IF _ended > 0 THEN
        RAISE NOTICE '% console session(s) ended', _ended;
    END IF;
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco.revoke_api_key(text) IS
$c$revoke the API key whose first characters (at least 8; 12 always name one key, the whole key too) are given, and
end the console sessions it opened; takes effect on the next request. Returns the keys revoked.
Example: SELECT reco.revoke_api_key('pgr_3f9a1c2b');$c$;

-- The tenant of a key, or invalid_authorization_specification. The key is hashed here (a SHA-256
-- of at most 500 bytes: 2-3 µs of a 28-47 µs check, `python -m app.bench_keys`), never taken hashed.
CREATE OR REPLACE FUNCTION reco._api_key(p_key text, OUT tenant_id int, OUT slug text, OUT key_id bigint)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    IF length(p_key) <= 500 THEN
        SELECT t.tenant_id, t.slug, k.key_id INTO tenant_id, slug, key_id
        FROM reco.api_keys k JOIN reco.tenants t ON t.tenant_id = k.tenant_id
        WHERE k.key_hash = sha256(convert_to(p_key, 'UTF8')) AND k.revoked_at IS NULL;
    END IF;
    IF tenant_id IS NULL THEN
        RAISE EXCEPTION 'invalid or revoked API key'
            USING ERRCODE = 'invalid_authorization_specification',
                  HINT = 'Send Authorization: Bearer <key>; create a key with `reco keys create`.';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION reco.api_tenant(p_key text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT (reco._api_key(p_key)).slug
$$;
COMMENT ON FUNCTION reco.api_tenant(text) IS
$c$the tenant slug of an API key (the key itself: its SHA-256 is no key); invalid_authorization_specification (28000)
otherwise. Example: SELECT reco.api_tenant('pgr_3f9a...');$c$;

-- ---------------------------------------------------------------------------------------
-- Requests
-- ---------------------------------------------------------------------------------------

-- GET recommendations | starter | similar: the response body, and the exposures recorded in the
-- same call (recommendations and starter, unless p_log is false).
CREATE OR REPLACE FUNCTION reco.api_serve(p_key text, p_kind text, p_id text, p_k int,
                                          p_options jsonb, p_request_id text, p_log boolean,
                                          p_explain boolean)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    _key record := reco._api_key(p_key);
    _items json;
    _keys int[];
    _user_key int;
    _segment text;
    _scenario text;
    _experiment int;
    _variants text[];
    _sides smallint[];
BEGIN
    -- bodies from row_to_json: compact ({"rank":1,...}), in the order of the columns
    IF p_kind = 'similar' THEN
        SELECT json_agg(row_to_json(s) ORDER BY s.rank) INTO _items
        FROM reco.similar_features(p_id, p_k, _key.slug) AS s;
        RETURN (SELECT row_to_json(a)::text
                FROM (SELECT p_request_id AS request_id, p_id AS feature_id, coalesce(_items, '[]') AS items,
                             NULL AS variant, false AS degraded) AS a);
    END IF;
    IF p_kind NOT IN ('recommendations', 'starter') THEN
        RAISE EXCEPTION 'unknown request kind "%"', p_kind
            USING ERRCODE = 'invalid_parameter_value', HINT = 'recommendations, starter or similar.';
    END IF;
    SELECT json_agg(CASE WHEN p_explain THEN json_strip_nulls(row_to_json(e)) ELSE row_to_json(i) END ORDER BY r.rank),
           array_agg(r.feature_key ORDER BY r.rank), min(r.user_key), min(r.segment), min(r.scenario),
           min(r.experiment_id), array_agg(DISTINCT r.variant) FILTER (WHERE r.variant IS NOT NULL),
           array_agg(r.side ORDER BY r.rank) FILTER (WHERE r.side IS NOT NULL)
    INTO _items, _keys, _user_key, _segment, _scenario, _experiment, _variants, _sides
    FROM reco._serve(_key.tenant_id, p_id, p_k,
                     CASE WHEN p_kind = 'starter' THEN reco._starter_options(_key.slug) || p_options ELSE p_options END,
                     p_explain) AS r
    CROSS JOIN LATERAL (SELECT r.rank, r.feature_id, r.score) AS i
    CROSS JOIN LATERAL (SELECT r.rank, r.feature_id, r.score, r.reasons, r.side) AS e;
    IF p_log AND cardinality(_keys) > 0 THEN
        PERFORM reco._log_exposures(_key.tenant_id, _user_key, p_id, _segment, p_request_id, _keys,
                                    CASE WHEN _sides IS NULL THEN _variants[1] END, _scenario, _experiment, _sides);
    END IF;
    RETURN (SELECT row_to_json(a)::text
            FROM (SELECT p_request_id AS request_id, p_id AS user_id, coalesce(_items, '[]') AS items,
                         CASE WHEN _sides IS NOT NULL THEN 'interleaved' ELSE _variants[1] END AS variant,
                         false AS degraded) AS a);
END $$;
COMMENT ON FUNCTION reco.api_serve(text, text, text, int, jsonb, text, boolean, boolean) IS
$c$one REST request for recommendations, a starter set or similar features: authenticates the key, ranks,
records the exposures (unless p_log is false) and returns the response body as JSON text.$c$;

-- GET plan
CREATE OR REPLACE FUNCTION reco.api_plan(p_key text, p_user_id text, p_request_id text)
RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT row_to_json(a)::text
    FROM (SELECT p_request_id AS request_id, p_user_id AS user_id,
                 coalesce((SELECT json_agg(row_to_json(p) ORDER BY p.rank)
                           FROM reco.recommend_plan(p_user_id, reco.api_tenant(p_key)) AS p), '[]') AS plans) AS a
$$;
COMMENT ON FUNCTION reco.api_plan(text, text, text) IS
    'one REST request for the plans priced for a user (reco.recommend_plan), as JSON text';

-- The list a degraded answer serves (kept in the API's memory, refreshed periodically): the
-- tenant's most popular active free features, as a JSON array of ids.
CREATE OR REPLACE FUNCTION reco.popular_fallback(p_tenant text, p_k int DEFAULT 100)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(json_agg(x.feature_id ORDER BY x.popularity DESC, x.feature_id), '[]')::text
    FROM (SELECT f.feature_id, st.popularity FROM reco.feature_stats st
          JOIN reco.features f ON f.tenant_id = st.tenant_id AND f.feature_key = st.feature_key
          WHERE st.tenant_id = reco._tenant_id(p_tenant) AND st.attribute = '*' AND st.value = '*'
            AND f.active AND NOT f.requires_paid
          ORDER BY st.popularity DESC LIMIT p_k) AS x
$$;
COMMENT ON FUNCTION reco.popular_fallback(text, int) IS
$c$the most popular active free features of a tenant (JSON array of ids): what the API serves, degraded, when the
database is slow or down (it reads them with reco.api_popular(key)). Example: SELECT reco.popular_fallback('default', 5);$c$;

-- ---------------------------------------------------------------------------------------
-- Erasure
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.erase_user(p_user_id text, p_tenant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _key int;
    _counts jsonb;
    _table text;
    _n bigint;
    _pending bigint;
BEGIN
    -- Ingest takes this lock shared before it resolves a user (reco._ingest_event_rows): an event
    -- sent meanwhile waits for this erasure to commit, then creates the user anew; an ingest in
    -- flight finishes first, and its events are erased with the others.
    PERFORM pg_advisory_xact_lock(reco.lock_key('ingest'), _tid);
    SELECT user_key INTO _key FROM reco.users WHERE tenant_id = _tid AND user_id = p_user_id;
    -- what was shown to the id before it was a user (reads create no user)
    PERFORM reco._bandit_forget(_tid, NULL, NULL, p_user_id);
    DELETE FROM reco.exposures WHERE tenant_id = _tid AND user_key IS NULL AND user_id = p_user_id;
    GET DIAGNOSTICS _pending = ROW_COUNT;
    IF _key IS NULL THEN
        IF _pending > 0 THEN
            RETURN jsonb_build_object('exposures', _pending, 'users', 0);
        END IF;
        RAISE EXCEPTION 'unknown user "%"', p_user_id
            USING ERRCODE = 'no_data_found', HINT = 'Nothing is stored under this id.';
    END IF;
    -- a killed import's staging table holds raw rows, this user's among them
    PERFORM reco.drop_stale_import_stages();
    DELETE FROM reco.event_ids i USING reco.events e
    WHERE e.tenant_id = _tid AND e.user_key = _key AND i.tenant_id = _tid AND i.event_id = e.event_id;
    GET DIAGNOSTICS _n = ROW_COUNT;
    _counts := jsonb_build_object('event_ids', _n);
    PERFORM reco._bandit_forget(_tid, _key, NULL);  -- the arms no longer count their exposures
    FOREACH _table IN ARRAY '{events,interactions,user_vectors,usercf_scores,exposures,user_daily_uses,churn_scores}'::text[] LOOP
        EXECUTE format('DELETE FROM reco.%I WHERE tenant_id = $1 AND user_key = $2', _table) USING _tid, _key;
        GET DIAGNOSTICS _n = ROW_COUNT;
        _counts := _counts || jsonb_build_object(_table, _n);
    END LOOP;
    DELETE FROM reco.users WHERE tenant_id = _tid AND user_key = _key;
    RETURN _counts || jsonb_build_object('users', 1, 'exposures', (_counts ->> 'exposures')::bigint + _pending);
END $$;
COMMENT ON FUNCTION reco.erase_user(text, text) IS
$c$erase a user everywhere (events and their ids, interactions, user vector and UserCF row, exposures, churn scores, the user row), for
privacy requests; returns the rows deleted per table. The bandit arms stop counting the user's exposures
at once; the other aggregates (stats, priors, neighbours) after the next jobs. Unknown user: no_data_found.
Example: SELECT reco.erase_user('U42');$c$;
