-- Ingest: users, features, plans and events, from JSON (API, SQL) or staged CSV (reco import).
--
-- Every entry point takes a batch and returns a report
--   {"accepted": n, "duplicates": n, "rejected": [{"index": i, "field": "...", "reason": "..."}]}
-- Valid rows are stored, bad rows are reported, a retried batch reports duplicates and changes
-- nothing. One private core per entity (reco._*_rows) serves both the JSON and the CSV path.

DROP TYPE IF EXISTS reco.event_input CASCADE;
CREATE TYPE reco.event_input AS (
    idx bigint, problem text[], event_id text, user_id text, feature_id text,
    occurred_at text, kind text, success text, props jsonb);
COMMENT ON TYPE reco.event_input IS 'internal: one raw event row (text fields), as parsed from JSON or CSV';

DROP TYPE IF EXISTS reco._event_checked CASCADE;
CREATE TYPE reco._event_checked AS (
    idx bigint, event_id text, user_id text, feature_key int, occurred_at timestamptz,
    kind text, success boolean, props jsonb, field text, reason text);

DROP TYPE IF EXISTS reco._user_checked CASCADE;
CREATE TYPE reco._user_checked AS (
    idx bigint, user_id text, paid boolean, attributes jsonb, field text, reason text);

DROP TYPE IF EXISTS reco._feature_checked CASCADE;
CREATE TYPE reco._feature_checked AS (
    idx bigint, feature_id text, name text, category text, requires_paid boolean, tags text[],
    description text, active boolean, embedding real[], field text, reason text);

DROP TYPE IF EXISTS reco._plan_checked CASCADE;
CREATE TYPE reco._plan_checked AS (
    idx bigint, plan_id text, name text, price numeric, quota numeric, overage_price numeric,
    includes_paid_features boolean, active boolean, field text, reason text);

DROP TYPE IF EXISTS reco.user_input CASCADE;
CREATE TYPE reco.user_input AS (
    idx bigint, problem text[], user_id text, paid text, attributes jsonb);
COMMENT ON TYPE reco.user_input IS 'internal: one raw user row, as parsed from JSON or CSV';

DROP TYPE IF EXISTS reco.feature_input CASCADE;
CREATE TYPE reco.feature_input AS (
    idx bigint, problem text[], feature_id text, name text, category text, requires_paid text,
    tags text[], description text, active text, embedding real[]);
COMMENT ON TYPE reco.feature_input IS 'internal: one raw feature row, as parsed from JSON or CSV';

DROP TYPE IF EXISTS reco.plan_input CASCADE;
CREATE TYPE reco.plan_input AS (
    idx bigint, problem text[], plan_id text, name text, price text, quota text,
    overage_price text, includes_paid_features text, active text);
COMMENT ON TYPE reco.plan_input IS 'internal: one raw plan row, as parsed from JSON or CSV';

-- ---------------------------------------------------------------------------------------
-- Shared helpers
-- ---------------------------------------------------------------------------------------

-- What one event adds to its interaction's weight: kind weight · exp((t − t0)/τ) · (1 + γ·success),
-- the exponent clamped at ±700. One definition for ingest and reco.rebuild_interactions.
CREATE OR REPLACE FUNCTION reco._event_weight(p_kind text, p_occurred_at timestamptz, p_success boolean,
                                              p_t0 float8, p_tau float8, p_gamma float8,
                                              p_kind_weights jsonb)
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce((p_kind_weights ->> p_kind)::float8, 1.0)
           * exp(least(700.0, greatest(-700.0, (extract(epoch FROM p_occurred_at)::float8 - p_t0) / p_tau)))
           * (1.0 + p_gamma * (p_success IS TRUE)::int)
$$;

CREATE OR REPLACE FUNCTION reco._report(p_accepted bigint, p_duplicates bigint, p_rejected jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('accepted', p_accepted, 'duplicates', p_duplicates,
                              'rejected', coalesce(p_rejected, '[]'::jsonb))
$$;

CREATE OR REPLACE FUNCTION reco._rejections(p_idx bigint[], p_field text[], p_reason text[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_agg(jsonb_build_object('index', i, 'field', f, 'reason', r) ORDER BY i)
    FROM unnest(p_idx, p_field, p_reason) AS t(i, f, r)
    WHERE f IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION reco._require_array(p_batch jsonb, p_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_batch IS NULL OR jsonb_typeof(p_batch) <> 'array' THEN
        RAISE EXCEPTION '% must be a JSON array, got %', p_name, coalesce(jsonb_typeof(p_batch), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a JSON array of objects, e.g. ''[{"user_id": "U1"}]''::jsonb.';
    END IF;
END $$;

-- The first problem with the shape of one JSON element: not an object, or a field that must
-- be a scalar holding an object or array. NULL when the shape is fine.
CREATE OR REPLACE FUNCTION reco._json_shape_problem(p_row jsonb, p_scalars text[])
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN jsonb_typeof(p_row) <> 'object' THEN ARRAY['(row)', 'not a JSON object']
        ELSE (SELECT ARRAY[f, format('expected a string, number or boolean, got a JSON %s',
                                     jsonb_typeof(p_row -> f))]
              FROM unnest(p_scalars) AS f
              WHERE jsonb_typeof(p_row -> f) IN ('object', 'array')
              LIMIT 1)
    END
$$;

CREATE OR REPLACE FUNCTION reco._missing(p text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p IS NULL OR btrim(p) = ''
$$;

-- ---------------------------------------------------------------------------------------
-- Events
-- ---------------------------------------------------------------------------------------

DROP FUNCTION IF EXISTS reco._check_events(int, reco.event_input[], timestamptz, boolean);
CREATE OR REPLACE FUNCTION reco._check_events(p_tenant_id int, p_rows reco.event_input[],
                                              p_latest timestamptz, p_safe_time boolean, p_oldest timestamptz)
RETURNS SETOF reco._event_checked
LANGUAGE sql STABLE AS $$
    -- OFFSET 0 keeps each level from being flattened into the next, so the parsed values and
    -- the error are computed once per row instead of at every reference.
    SELECT c.idx,
           coalesce(nullif(c.event_id, ''),
                    'h:' || md5(concat_ws('|', c.user_id, c.feature_id, c.kind,
                                          extract(epoch FROM c.ts)::text))),
           c.user_id, c.feature_key, c.ts, c.kind, c.ok, nullif(c.props, 'null'::jsonb),
           c.err[1], c.err[2]
    FROM (
        SELECT p.*, CASE
            WHEN p.problem IS NOT NULL THEN p.problem
            WHEN reco._missing(p.user_id) THEN ARRAY['user_id', 'missing']
            WHEN length(p.user_id) > 200 THEN ARRAY['user_id', 'longer than 200 characters']
            WHEN reco._missing(p.feature_id) THEN ARRAY['feature_id', 'missing']
            WHEN p.feature_key IS NULL THEN ARRAY['feature_id', format('unknown feature "%s"', p.feature_id)]
            WHEN NOT p.active THEN ARRAY['feature_id', format('feature "%s" is inactive', p.feature_id)]
            WHEN reco._missing(p.occurred_at) THEN ARRAY['occurred_at', 'missing']
            WHEN p.ts IS NULL THEN
                ARRAY['occurred_at', format('"%s" is not a time (ISO 8601 or epoch seconds)', p.occurred_at)]
            WHEN p.ts > p_latest THEN ARRAY['occurred_at', format('%s is in the future', p.occurred_at)]
            WHEN p.ts < '1970-01-01 00:00:00+00' THEN ARRAY['occurred_at', 'before 1970']
            WHEN p.ts < p_oldest THEN
                ARRAY['occurred_at', format('%s is older than max_event_age (before %s)', p.occurred_at, p_oldest)]
            WHEN p.kind !~ '^[A-Za-z0-9_.:-]{1,40}$' THEN
                ARRAY['kind', 'use 1-40 letters, digits, "_", ".", ":" or "-"']
            WHEN NOT reco._missing(p.success) AND p.ok IS NULL THEN
                ARRAY['success', format('"%s" is not a boolean', p.success)]
            WHEN p.props IS NOT NULL AND jsonb_typeof(p.props) NOT IN ('object', 'null') THEN
                ARRAY['props', 'not a JSON object']
            WHEN length(p.event_id) > 200 THEN ARRAY['event_id', 'longer than 200 characters']
        END AS err
        FROM (
            SELECT r.idx, r.problem, r.event_id, r.user_id, r.feature_id, r.occurred_at, r.success,
                   r.props, f.feature_key, f.active,
                   CASE WHEN p_safe_time THEN reco._parse_time_safe(r.occurred_at)
                        ELSE reco._parse_time(r.occurred_at) END AS ts,
                   reco._parse_bool(r.success) AS ok,
                   coalesce(nullif(btrim(r.kind), ''), 'use') AS kind
            FROM unnest(p_rows) AS r
            LEFT JOIN reco.features f ON f.tenant_id = p_tenant_id AND f.feature_id = r.feature_id
            OFFSET 0
        ) AS p
        OFFSET 0
    ) AS c
$$;

-- unnest() of a plpgsql array variable is planned as a handful of rows, whatever its size,
-- which turns joins on it into nested loops that are quadratic in the batch size. This wrapper
-- is not inlined, so its ROWS estimate stands and the planner hashes such joins.
CREATE OR REPLACE FUNCTION reco._batch(p_rows reco._event_checked[])
RETURNS SETOF reco._event_checked
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE ROWS 1000 AS $$
BEGIN
    RETURN QUERY SELECT * FROM unnest(p_rows);
END $$;

CREATE OR REPLACE FUNCTION reco._ingest_event_rows(p_tenant_id int, p_rows reco.event_input[])
RETURNS jsonb
LANGUAGE plpgsql
-- batches differ in size: plan each with its real row counts (a cached generic plan guesses a
-- few rows for unnest() and picks nested loops that are quadratic on a 50k-row chunk)
SET plan_cache_mode = force_custom_plan
SET TimeZone = 'UTC' AS $$
DECLARE
    _rows reco._event_checked[];
    _valid_rows reco._event_checked[];
    _tau float8 := (reco.setting('decay_tau_days', p_tenant_id))::float8 * 86400;
    _gamma float8 := (reco.setting('success_bonus', p_tenant_id))::float8;
    _kind_weights jsonb := reco.setting('kind_weights', p_tenant_id);
    _latest timestamptz := now() + (reco.setting('max_future', p_tenant_id) ->> 0)::interval;
    _window interval := (reco.setting('bandit_window', p_tenant_id) ->> 0)::interval;
    _oldest timestamptz := now() - (reco.setting('max_event_age', p_tenant_id) ->> 0)::interval;
    _t0 float8;
    _valid bigint;
    _fresh bigint;
    _max timestamptz;
    _rejected jsonb;
    _new_users bigint;
BEGIN
    BEGIN
        _rows := ARRAY(SELECT c FROM reco._check_events(p_tenant_id, p_rows, _latest, false, _oldest) AS c);
    EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format
            OR numeric_value_out_of_range OR invalid_parameter_value THEN
        -- a time that looks right but is not a date (2024-02-30): check row by row
        _rows := ARRAY(SELECT c FROM reco._check_events(p_tenant_id, p_rows, _latest, true, _oldest) AS c);
    END;

    -- the valid rows get an array of their own: a filter on field IS NULL would be estimated
    -- at 0.5 % of the rows and mislead the planner on every statement below
    _valid_rows := ARRAY(SELECT r FROM unnest(_rows) AS r WHERE r.field IS NULL);
    SELECT count(*), max(occurred_at) INTO _valid, _max FROM unnest(_valid_rows);
    _rejected := (SELECT reco._rejections(array_agg(idx), array_agg(field), array_agg(reason))
                  FROM unnest(_rows));
    IF _valid = 0 THEN
        RETURN reco._report(0, 0, _rejected);
    END IF;

    -- a partition for each month that holds data (not the gaps between)
    PERFORM reco.ensure_event_partitions(m.month, m.month)
    FROM (SELECT DISTINCT date_trunc('month', occurred_at) AS month
          FROM unnest(_valid_rows)) AS m;

    -- Erasure (reco.erase_user) holds this lock exclusively until it commits; the bandit job too
    -- (see reco.job_bandit). It is taken before any user is resolved: an event for a user being
    -- erased waits for the erasure, then creates the user anew. Resolved before the lock, the
    -- user was gone by the time the event was stored: its id was kept in event_ids, the event
    -- was not stored, and every retry was reported a duplicate (issue 24). After the partitions,
    -- as reco.job_maintenance orders them (partitions, then this lock).
    PERFORM pg_advisory_xact_lock_shared(reco.lock_key('ingest'), p_tenant_id);

    -- users seen for the first time become cold users
    INSERT INTO reco.users (tenant_id, user_id)
    SELECT DISTINCT p_tenant_id, r.user_id
    FROM reco._batch(_valid_rows) AS r
    WHERE NOT EXISTS (SELECT 1 FROM reco.users u
                      WHERE u.tenant_id = p_tenant_id AND u.user_id = r.user_id)
    ORDER BY 2
    ON CONFLICT ON CONSTRAINT users_tenant_id_user_id_key DO NOTHING;
    GET DIAGNOSTICS _new_users = ROW_COUNT;
    IF _new_users > 0 THEN
        -- what they were shown before they existed (reads do not create users)
        PERFORM reco._attach_exposures(p_tenant_id, ARRAY(SELECT DISTINCT r.user_id FROM reco._batch(_valid_rows) AS r));
    END IF;

    -- Decay epoch t0: a batch far ahead of it (the tenant's first event was an outlier, or the
    -- maintenance job has not run for long) rebases it first, before any weight is computed:
    -- else every new weight would be clamped at e^700 and recency lost. Then wait for a running
    -- rebase (it locks interactions in SHARE ROW EXCLUSIVE) and read it. A tenant's first events
    -- set it: t0 follows the data, not the wall clock.
    SELECT extract(epoch FROM decay_epoch) INTO _t0 FROM reco.tenants WHERE tenant_id = p_tenant_id;
    IF _t0 IS NOT NULL AND (extract(epoch FROM _max) - _t0) / _tau > reco.setting('rebase_after', p_tenant_id)::float8 THEN
        PERFORM reco.rebase_epoch(p_tenant_id, date_trunc('day', _max));
    END IF;
    LOCK TABLE reco.interactions IN ROW EXCLUSIVE MODE;
    SELECT extract(epoch FROM decay_epoch) INTO _t0 FROM reco.tenants WHERE tenant_id = p_tenant_id;
    IF _t0 IS NULL THEN
        UPDATE reco.tenants SET decay_epoch = coalesce(decay_epoch, date_trunc('day', _max))
        WHERE tenant_id = p_tenant_id
        RETURNING extract(epoch FROM decay_epoch) INTO _t0;
    END IF;

    WITH fresh AS (
        -- in event_id order: two batches holding the same ids in another order take their
        -- index locks in the same order, so they wait for each other instead of deadlocking
        INSERT INTO reco.event_ids (tenant_id, event_id, occurred_at)
        SELECT p_tenant_id, r.event_id, r.occurred_at FROM reco._batch(_valid_rows) AS r
        ORDER BY r.event_id
        ON CONFLICT ON CONSTRAINT event_ids_pkey DO NOTHING
        RETURNING event_id
    ), ins AS (
        INSERT INTO reco.events (tenant_id, occurred_at, user_key, feature_key, event_id, kind,
                                 success, props)
        SELECT p_tenant_id, r.occurred_at, u.user_key, r.feature_key, r.event_id, r.kind,
               r.success, r.props
        FROM (SELECT DISTINCT ON (event_id) * FROM reco._batch(_valid_rows)
              ORDER BY event_id, idx) AS r
        JOIN fresh ON fresh.event_id = r.event_id
        CROSS JOIN LATERAL (SELECT u.user_key FROM reco.users u
                            WHERE u.tenant_id = p_tenant_id AND u.user_id = r.user_id
                            LIMIT 1) AS u
        RETURNING user_key, feature_key, occurred_at, kind, success
    ), daily AS (
        -- a user's uses per day, for /plan
        INSERT INTO reco.user_daily_uses AS d (tenant_id, user_key, day, uses, paid_uses)
        SELECT p_tenant_id, i.user_key, (i.occurred_at AT TIME ZONE 'UTC')::date, count(*),
               count(*) FILTER (WHERE f.requires_paid)
        FROM ins i
        JOIN reco.features f ON f.tenant_id = p_tenant_id AND f.feature_key = i.feature_key
        GROUP BY 2, 3 ORDER BY 2, 3
        ON CONFLICT ON CONSTRAINT user_daily_uses_pkey DO UPDATE
            SET uses = d.uses + excluded.uses, paid_uses = d.paid_uses + excluded.paid_uses
        RETURNING 1
    ), agg AS (
        SELECT user_key, feature_key,
               sum(reco._event_weight(kind, occurred_at, success, _t0, _tau, _gamma, _kind_weights)) AS weight,
               count(*) AS uses,
               count(*) FILTER (WHERE success) AS successes,
               count(*) FILTER (WHERE NOT success) AS failures,
               min(occurred_at) AS first_at,
               max(occurred_at) AS last_at
        FROM ins GROUP BY user_key, feature_key
    ), upsert AS (
        INSERT INTO reco.interactions AS i (tenant_id, user_key, feature_key, weight, uses,
                                            successes, failures, first_at, last_at)
        SELECT p_tenant_id, user_key, feature_key, weight, uses, successes, failures,
               first_at, last_at
        FROM agg ORDER BY user_key, feature_key
        ON CONFLICT ON CONSTRAINT interactions_pkey DO UPDATE
            SET weight = i.weight + excluded.weight,
                uses = i.uses + excluded.uses,
                successes = i.successes + excluded.successes,
                failures = i.failures + excluded.failures,
                first_at = least(i.first_at, excluded.first_at),
                last_at = greatest(i.last_at, excluded.last_at)
        RETURNING 1
    ), hits AS (
        -- the feedback loop: a use that follows an exposure of the same feature to the same user
        -- within bandit_window marks the feature used in that exposure ...
        SELECT x.exposure_id, x.segment, x.shown_at, e.feature_key
        FROM ins e
        JOIN reco.exposures x ON x.tenant_id = p_tenant_id AND x.user_key = e.user_key
             AND x.shown_at <= e.occurred_at AND x.shown_at > e.occurred_at - _window
        WHERE e.feature_key = ANY (x.feature_keys) AND e.feature_key <> ALL (x.used_keys)
        GROUP BY x.exposure_id, x.segment, x.shown_at, e.feature_key
    ), used AS (
        UPDATE reco.exposures x SET used_keys = x.used_keys || h.keys
        FROM (SELECT exposure_id, array_agg(feature_key) AS keys FROM hits GROUP BY exposure_id) AS h
        WHERE x.tenant_id = p_tenant_id AND x.exposure_id = h.exposure_id
        RETURNING 1
    ), uses AS (
        -- ... and counts a success in its arm; an exposure the bandit job already counted as a
        -- failure (shown before its last count) moves from beta to alpha
        SELECT u.segment, u.feature_key, count(*) AS n,
               count(*) FILTER (WHERE u.shown_at < st.counted_before) AS counted
        FROM hits u
        LEFT JOIN reco.bandit_state st ON st.tenant_id = p_tenant_id
        GROUP BY u.segment, u.feature_key
    ), arms AS (
        INSERT INTO reco.bandit_arms AS b (tenant_id, segment, feature_key, alpha, beta)
        SELECT p_tenant_id, segment, feature_key, 1 + n, 1 + counted FROM uses
        ORDER BY segment, feature_key
        ON CONFLICT ON CONSTRAINT bandit_arms_pkey DO UPDATE
            SET alpha = b.alpha + (excluded.alpha - 1), beta = greatest(1, b.beta - (excluded.beta - 1))
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM ins) INTO _fresh;

    RETURN reco._report(_fresh, _valid - _fresh, _rejected);
END $$;
COMMENT ON FUNCTION reco._ingest_event_rows(int, reco.event_input[]) IS
    'internal: validate, deduplicate and store events, update reco.interactions; returns the report';

CREATE OR REPLACE FUNCTION reco.ingest_events(p_events jsonb, p_tenant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM reco._require_array(p_events, 'p_events');
    RETURN reco._ingest_event_rows(reco._tenant_id(p_tenant), ARRAY(
        SELECT ROW(t.ord - 1,
                   CASE WHEN jsonb_typeof(t.e) <> 'object'
                             OR jsonb_typeof(t.e -> 'event_id') IN ('object', 'array')
                             OR jsonb_typeof(t.e -> 'user_id') IN ('object', 'array')
                             OR jsonb_typeof(t.e -> 'feature_id') IN ('object', 'array')
                             OR jsonb_typeof(t.e -> 'occurred_at') IN ('object', 'array')
                             OR jsonb_typeof(t.e -> 'kind') IN ('object', 'array')
                             OR jsonb_typeof(t.e -> 'success') IN ('object', 'array')
                        THEN reco._json_shape_problem(
                            t.e, '{event_id,user_id,feature_id,occurred_at,kind,success}') END,
                   t.e ->> 'event_id', t.e ->> 'user_id', t.e ->> 'feature_id',
                   t.e ->> 'occurred_at', t.e ->> 'kind', t.e ->> 'success',
                   CASE WHEN jsonb_typeof(t.e) = 'object' THEN t.e -> 'props' END
               )::reco.event_input
        FROM jsonb_array_elements(p_events) WITH ORDINALITY AS t(e, ord)));
END $$;
COMMENT ON FUNCTION reco.ingest_events(jsonb, text) IS
$c$ingest a JSON array of usage events [{event_id?, user_id, feature_id, occurred_at, kind?, success?, props?}].
occurred_at: ISO 8601 (no offset = UTC) or epoch seconds. Unknown users are created; unknown or inactive
features, bad or future times are rejected per row. Idempotent on event_id (without one, on the content).
reco.interactions is updated in the same transaction. Returns {"accepted", "duplicates", "rejected": [{index, field, reason}]}.$c$;

-- ---------------------------------------------------------------------------------------
-- Users: fields given overwrite, fields left out keep their value; attributes are merged
-- (a key set to null is removed).
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._upsert_user_rows(p_tenant_id int, p_rows reco.user_input[])
RETURNS jsonb
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    _rows reco._user_checked[];
    _valid bigint;
    _updated bigint;
    _inserted bigint;
BEGIN
    _rows := ARRAY(
        SELECT ROW(r.idx, r.user_id, reco._parse_bool(r.paid),
                   coalesce(nullif(r.attributes, 'null'), '{}'),
                   e.err[1], e.err[2])::reco._user_checked
        FROM unnest(p_rows) AS r
        CROSS JOIN LATERAL (SELECT CASE
            WHEN r.problem IS NOT NULL THEN r.problem
            WHEN reco._missing(r.user_id) THEN ARRAY['user_id', 'missing']
            WHEN length(r.user_id) > 200 THEN ARRAY['user_id', 'longer than 200 characters']
            WHEN NOT reco._missing(r.paid) AND reco._parse_bool(r.paid) IS NULL THEN
                ARRAY['paid', format('"%s" is not a boolean', r.paid)]
            WHEN r.attributes IS NOT NULL AND jsonb_typeof(r.attributes) NOT IN ('object', 'null') THEN
                ARRAY['attributes', 'not a JSON object']
        END AS err) AS e);
    SELECT count(*) INTO _valid FROM unnest(_rows) WHERE field IS NULL;

    -- within a batch the last row for a user wins; an unchanged row is a duplicate
    WITH b AS (SELECT DISTINCT ON (user_id) * FROM unnest(_rows)
               WHERE field IS NULL ORDER BY user_id, idx DESC)
    UPDATE reco.users u
    SET paid = coalesce(b.paid, u.paid),
        attributes = jsonb_strip_nulls(u.attributes || b.attributes),
        updated_at = now()
    FROM b
    WHERE u.tenant_id = p_tenant_id AND u.user_id = b.user_id
      AND (coalesce(b.paid, u.paid), jsonb_strip_nulls(u.attributes || b.attributes))
          IS DISTINCT FROM (u.paid, u.attributes);
    GET DIAGNOSTICS _updated = ROW_COUNT;

    INSERT INTO reco.users (tenant_id, user_id, paid, attributes)
    SELECT DISTINCT ON (b.user_id) p_tenant_id, b.user_id, coalesce(b.paid, false),
           jsonb_strip_nulls(b.attributes)
    FROM unnest(_rows) AS b
    WHERE b.field IS NULL
      AND NOT EXISTS (SELECT 1 FROM reco.users u
                      WHERE u.tenant_id = p_tenant_id AND u.user_id = b.user_id)
    ORDER BY b.user_id, b.idx DESC
    ON CONFLICT ON CONSTRAINT users_tenant_id_user_id_key DO NOTHING;
    GET DIAGNOSTICS _inserted = ROW_COUNT;
    IF _inserted > 0 THEN
        PERFORM reco._attach_exposures(p_tenant_id, ARRAY(SELECT b.user_id FROM unnest(_rows) AS b WHERE b.field IS NULL));
    END IF;

    RETURN reco._report(_updated + _inserted, _valid - _updated - _inserted,
        (SELECT reco._rejections(array_agg(idx), array_agg(field), array_agg(reason)) FROM unnest(_rows)));
END $$;
COMMENT ON FUNCTION reco._upsert_user_rows(int, reco.user_input[]) IS
    'internal: validate and upsert users; returns the report';

CREATE OR REPLACE FUNCTION reco.upsert_users(p_users jsonb, p_tenant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM reco._require_array(p_users, 'p_users');
    RETURN reco._upsert_user_rows(reco._tenant_id(p_tenant), ARRAY(
        SELECT ROW(t.ord - 1, reco._json_shape_problem(t.e, '{user_id,paid}'),
                   t.e ->> 'user_id', t.e ->> 'paid',
                   CASE WHEN jsonb_typeof(t.e) = 'object' THEN t.e -> 'attributes' END
               )::reco.user_input
        FROM jsonb_array_elements(p_users) WITH ORDINALITY AS t(e, ord)));
END $$;
COMMENT ON FUNCTION reco.upsert_users(jsonb, text) IS
$c$create or update users from a JSON array [{user_id, paid?, attributes?}]. Fields left out keep their
stored value; attributes (industry, usage_band, ...) are merged into the stored ones and a key set to null
is removed. Returns {"accepted", "duplicates" (unchanged rows), "rejected": [{index, field, reason}]}.$c$;

-- ---------------------------------------------------------------------------------------
-- Features: fields given overwrite, fields left out keep their value.
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._upsert_feature_rows(p_tenant_id int, p_rows reco.feature_input[])
RETURNS jsonb
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    _rows reco._feature_checked[];
    _valid bigint;
    _updated bigint;
    _inserted bigint;
BEGIN
    _rows := ARRAY(
        SELECT ROW(r.idx, r.feature_id, nullif(btrim(r.name), ''), nullif(btrim(r.category), ''),
                   reco._parse_bool(r.requires_paid),
                   ARRAY(SELECT btrim(t) FROM unnest(r.tags) AS t WHERE btrim(t) <> ''),
                   r.description, reco._parse_bool(r.active), r.embedding,
                   e.err[1], e.err[2])::reco._feature_checked
        FROM unnest(p_rows) AS r
        CROSS JOIN LATERAL (SELECT CASE
            WHEN r.problem IS NOT NULL THEN r.problem
            WHEN reco._missing(r.feature_id) THEN ARRAY['feature_id', 'missing']
            WHEN length(r.feature_id) > 200 THEN ARRAY['feature_id', 'longer than 200 characters']
            WHEN NOT reco._missing(r.requires_paid) AND reco._parse_bool(r.requires_paid) IS NULL THEN
                ARRAY['requires_paid', format('"%s" is not a boolean', r.requires_paid)]
            WHEN NOT reco._missing(r.active) AND reco._parse_bool(r.active) IS NULL THEN
                ARRAY['active', format('"%s" is not a boolean', r.active)]
            WHEN r.embedding IS NOT NULL AND cardinality(r.embedding) = 0 THEN
                ARRAY['embedding', 'empty']
            WHEN r.embedding IS NOT NULL AND array_position(r.embedding, NULL) IS NOT NULL THEN
                ARRAY['embedding', 'contains null']
        END AS err) AS e);
    SELECT count(*) INTO _valid FROM unnest(_rows) WHERE field IS NULL;

    WITH b AS (SELECT DISTINCT ON (feature_id) * FROM unnest(_rows)
               WHERE field IS NULL ORDER BY feature_id, idx DESC),
    n AS (
        SELECT f.feature_key, coalesce(b.name, f.name) AS name,
               coalesce(b.category, f.category) AS category,
               coalesce(b.requires_paid, f.requires_paid) AS requires_paid,
               CASE WHEN b.tags IS NULL OR cardinality(b.tags) = 0 THEN f.tags ELSE b.tags END AS tags,
               coalesce(b.description, f.description) AS description,
               coalesce(b.active, f.active) AS active,
               coalesce(b.embedding, f.embedding) AS embedding
        FROM b JOIN reco.features f ON f.tenant_id = p_tenant_id AND f.feature_id = b.feature_id
    )
    UPDATE reco.features f
    SET name = n.name, category = n.category, requires_paid = n.requires_paid, tags = n.tags,
        description = n.description, active = n.active, embedding = n.embedding,
        updated_at = now()
    FROM n
    WHERE f.tenant_id = p_tenant_id AND f.feature_key = n.feature_key
      AND (n.name, n.category, n.requires_paid, n.tags, n.description, n.active, n.embedding)
          IS DISTINCT FROM
          (f.name, f.category, f.requires_paid, f.tags, f.description, f.active, f.embedding);
    GET DIAGNOSTICS _updated = ROW_COUNT;

    INSERT INTO reco.features (tenant_id, feature_id, name, category, requires_paid, tags,
                               description, active, embedding)
    SELECT DISTINCT ON (b.feature_id) p_tenant_id, b.feature_id, coalesce(b.name, b.feature_id),
           coalesce(b.category, 'general'), coalesce(b.requires_paid, false),
           coalesce(b.tags, '{}'), b.description, coalesce(b.active, true), b.embedding
    FROM unnest(_rows) AS b
    WHERE b.field IS NULL
      AND NOT EXISTS (SELECT 1 FROM reco.features f
                      WHERE f.tenant_id = p_tenant_id AND f.feature_id = b.feature_id)
    ORDER BY b.feature_id, b.idx DESC
    ON CONFLICT ON CONSTRAINT features_tenant_id_feature_id_key DO NOTHING;
    GET DIAGNOSTICS _inserted = ROW_COUNT;

    RETURN reco._report(_updated + _inserted, _valid - _updated - _inserted,
        (SELECT reco._rejections(array_agg(idx), array_agg(field), array_agg(reason)) FROM unnest(_rows)));
END $$;
COMMENT ON FUNCTION reco._upsert_feature_rows(int, reco.feature_input[]) IS
    'internal: validate and upsert features; returns the report';

CREATE OR REPLACE FUNCTION reco.upsert_features(p_features jsonb, p_tenant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM reco._require_array(p_features, 'p_features');
    RETURN reco._upsert_feature_rows(reco._tenant_id(p_tenant), ARRAY(
        SELECT ROW(t.ord - 1,
                   coalesce(
                       reco._json_shape_problem(t.e,
                           '{feature_id,name,category,requires_paid,description,active}'),
                       CASE
                           WHEN jsonb_typeof(t.e -> 'tags') NOT IN ('array', 'null') THEN
                               ARRAY['tags', 'not a JSON array of strings']
                           WHEN jsonb_typeof(t.e -> 'tags') = 'array' AND jsonb_path_exists(
                                   t.e -> 'tags', '$[*] ? (@.type() != "string")') THEN
                               ARRAY['tags', 'not a JSON array of strings']
                           WHEN jsonb_typeof(t.e -> 'embedding') NOT IN ('array', 'null') THEN
                               ARRAY['embedding', 'not a JSON array of numbers']
                           WHEN jsonb_typeof(t.e -> 'embedding') = 'array' AND jsonb_path_exists(
                                   t.e -> 'embedding', '$[*] ? (@.type() != "number")') THEN
                               ARRAY['embedding', 'not a JSON array of numbers']
                       END),
                   t.e ->> 'feature_id', t.e ->> 'name', t.e ->> 'category',
                   t.e ->> 'requires_paid',
                   CASE WHEN jsonb_typeof(t.e -> 'tags') = 'array'
                             AND NOT jsonb_path_exists(t.e -> 'tags', '$[*] ? (@.type() != "string")')
                        THEN ARRAY(SELECT jsonb_array_elements_text(t.e -> 'tags')) END,
                   t.e ->> 'description', t.e ->> 'active',
                   CASE WHEN jsonb_typeof(t.e -> 'embedding') = 'array'
                             AND NOT jsonb_path_exists(t.e -> 'embedding', '$[*] ? (@.type() != "number")')
                        THEN ARRAY(SELECT x::real FROM jsonb_array_elements_text(t.e -> 'embedding') AS x)
                   END
               )::reco.feature_input
        FROM jsonb_array_elements(p_features) WITH ORDINALITY AS t(e, ord)));
END $$;
COMMENT ON FUNCTION reco.upsert_features(jsonb, text) IS
$c$create or update catalog features from a JSON array [{feature_id, name?, category?, requires_paid?, tags?,
description?, active?, embedding?}]. Fields left out keep their stored value (new features: name = feature_id,
category 'general', free, active). embedding: an optional client vector (array of numbers) that the embeddings
job prefers over the content embedding. Returns {"accepted", "duplicates", "rejected": [{index, field, reason}]}.$c$;

-- ---------------------------------------------------------------------------------------
-- Plans: a plan row is replaced whole (quota or overage_price left out = unlimited / none).
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._upsert_plan_rows(p_tenant_id int, p_rows reco.plan_input[])
RETURNS jsonb
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    _rows reco._plan_checked[];
    _valid bigint;
    _changed bigint;
BEGIN
    _rows := ARRAY(
        SELECT ROW(r.idx, r.plan_id, coalesce(nullif(btrim(r.name), ''), r.plan_id),
                   reco._parse_number(r.price), reco._parse_number(r.quota),
                   reco._parse_number(r.overage_price),
                   coalesce(reco._parse_bool(r.includes_paid_features), false),
                   coalesce(reco._parse_bool(r.active), true),
                   e.err[1], e.err[2])::reco._plan_checked
        FROM unnest(p_rows) AS r
        CROSS JOIN LATERAL (SELECT CASE
            WHEN r.problem IS NOT NULL THEN r.problem
            WHEN reco._missing(r.plan_id) THEN ARRAY['plan_id', 'missing']
            WHEN length(r.plan_id) > 200 THEN ARRAY['plan_id', 'longer than 200 characters']
            WHEN reco._missing(r.price) THEN ARRAY['price', 'missing']
            WHEN reco._parse_number(r.price) IS NULL OR reco._parse_number(r.price) < 0
                 OR reco._parse_number(r.price) >= 1e10 THEN
                ARRAY['price', format('"%s" is not an amount >= 0', r.price)]
            WHEN NOT reco._missing(r.quota) AND (reco._parse_number(r.quota) IS NULL
                 OR reco._parse_number(r.quota) < 0 OR reco._parse_number(r.quota) > 2e9
                 OR reco._parse_number(r.quota) <> trunc(reco._parse_number(r.quota))) THEN
                ARRAY['quota', format('"%s" is not a whole number >= 0', r.quota)]
            WHEN NOT reco._missing(r.overage_price) AND (reco._parse_number(r.overage_price) IS NULL
                 OR reco._parse_number(r.overage_price) < 0
                 OR reco._parse_number(r.overage_price) >= 1e8) THEN
                ARRAY['overage_price', format('"%s" is not an amount >= 0', r.overage_price)]
            WHEN NOT reco._missing(r.includes_paid_features)
                 AND reco._parse_bool(r.includes_paid_features) IS NULL THEN
                ARRAY['includes_paid_features', format('"%s" is not a boolean', r.includes_paid_features)]
            WHEN NOT reco._missing(r.active) AND reco._parse_bool(r.active) IS NULL THEN
                ARRAY['active', format('"%s" is not a boolean', r.active)]
        END AS err) AS e);
    SELECT count(*) INTO _valid FROM unnest(_rows) WHERE field IS NULL;

    INSERT INTO reco.plans AS p (tenant_id, plan_id, name, price, quota, overage_price,
                                 includes_paid_features, active)
    SELECT DISTINCT ON (b.plan_id) p_tenant_id, b.plan_id, b.name, b.price, b.quota::int,
           b.overage_price, b.includes_paid_features, b.active
    FROM unnest(_rows) AS b
    WHERE b.field IS NULL
    ORDER BY b.plan_id, b.idx DESC
    ON CONFLICT ON CONSTRAINT plans_pkey DO UPDATE
        SET name = excluded.name, price = excluded.price, quota = excluded.quota,
            overage_price = excluded.overage_price,
            includes_paid_features = excluded.includes_paid_features,
            active = excluded.active, updated_at = now()
        WHERE (p.name, p.price, p.quota, p.overage_price, p.includes_paid_features, p.active)
              IS DISTINCT FROM (excluded.name, excluded.price, excluded.quota,
                                excluded.overage_price, excluded.includes_paid_features,
                                excluded.active);
    GET DIAGNOSTICS _changed = ROW_COUNT;

    RETURN reco._report(_changed, _valid - _changed,
        (SELECT reco._rejections(array_agg(idx), array_agg(field), array_agg(reason)) FROM unnest(_rows)));
END $$;
COMMENT ON FUNCTION reco._upsert_plan_rows(int, reco.plan_input[]) IS
    'internal: validate and upsert plans; returns the report';

CREATE OR REPLACE FUNCTION reco.upsert_plans(p_plans jsonb, p_tenant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM reco._require_array(p_plans, 'p_plans');
    RETURN reco._upsert_plan_rows(reco._tenant_id(p_tenant), ARRAY(
        SELECT ROW(t.ord - 1,
                   reco._json_shape_problem(t.e,
                       '{plan_id,name,price,quota,overage_price,includes_paid_features,active}'),
                   t.e ->> 'plan_id', t.e ->> 'name', t.e ->> 'price', t.e ->> 'quota',
                   t.e ->> 'overage_price', t.e ->> 'includes_paid_features', t.e ->> 'active'
               )::reco.plan_input
        FROM jsonb_array_elements(p_plans) WITH ORDINALITY AS t(e, ord)));
END $$;
COMMENT ON FUNCTION reco.upsert_plans(jsonb, text) IS
$c$create or replace pricing plans from a JSON array [{plan_id, name?, price, quota?, overage_price?,
includes_paid_features?, active?}]. price per month; quota = uses included per month (absent: unlimited);
overage_price per use beyond the quota (absent: no overage, the plan does not fit beyond its quota).
Returns {"accepted", "duplicates", "rejected": [{index, field, reason}]}.$c$;
