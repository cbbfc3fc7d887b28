-- Churn, part 1: the definitions (settings), the features of a user as of a day, the snapshot days and the
-- labels. Models and scoring are in 083_churn_models.sql, monitoring in 084_churn_monitoring.sql.
--
-- Conventions. as_of is a date: features read only events strictly before as_of 00:00 UTC (the snapshot day t is
-- the day before as_of). A user is churned at as_of when no activity event falls in [as_of, as_of + window days):
-- the days t+1 .. t+window. A snapshot is matured once that window lies wholly before the data's end.

-- Its settings' defaults are in sql/010_tenants_settings.sql (every default in one place), their rules in 011.

-- ---------------------------------------------------------------------------------------
-- Features
-- ---------------------------------------------------------------------------------------

-- The features, in the order of reco._churn_matrix's array. Adding one: a name here, an expression in the
-- final ARRAY of reco._churn_matrix (an aggregate in its CTE a if it reads events); a model keeps its own list
-- (reco.models.features), so old models score on as long as their features exist.
CREATE OR REPLACE FUNCTION reco.churn_feature_names()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{recency_days,tenure_days,active_days_7,active_days_obs,active_days_total,events_7,events_obs,
             events_total,distinct_features_obs,events_trend,success_rate_obs,failure_rate_7,failure_rate_prev,
             failure_trend,mean_gap_days,overdue_ratio,weekend_share,night_share,paid,plan_price,quota_use,
             monetary_total,monetary_obs,exposures_obs,rec_clicks_obs,rec_click_rate}'::text[]
$$;
COMMENT ON FUNCTION reco.churn_feature_names() IS
$c$the churn features, in order: recency_days (days since the last activity), tenure_days (since the first),
active_days_7 / active_days_obs / active_days_total (distinct active days in the last 7, the observation window,
ever), events_7 / events_obs / events_total, distinct_features_obs, events_trend (ln of the daily rate of the
last 7 days over the rest of the window, +0.1 each), success_rate_obs (smoothed), failure_rate_7 /
failure_rate_prev / failure_trend (last 7 days vs the rest), mean_gap_days (between active days), overdue_ratio
(recency over the mean time per active day), weekend_share / night_share (00-06 UTC) of the window's events,
paid, plan_price (attribute plan joined to reco.plans), quota_use (window's events per 30 days over the plan's
quota), monetary_total / monetary_obs (payment events' amounts), exposures_obs, rec_clicks_obs (exposures
followed by a use of a shown feature within bandit_window, before as_of), rec_click_rate.$c$;

-- the features some models read on a log scale: ln(1 + max(x, 0)) (counts, days, money)
CREATE OR REPLACE FUNCTION reco._churn_log_features()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{recency_days,tenure_days,active_days_7,active_days_obs,active_days_total,events_7,events_obs,
             events_total,distinct_features_obs,mean_gap_days,overdue_ratio,plan_price,quota_use,monetary_total,
             monetary_obs,exposures_obs,rec_clicks_obs}'::text[]
$$;
COMMENT ON FUNCTION reco._churn_log_features() IS
    'internal: the churn features the logistic regression reads as ln(1 + x) (heavy-tailed counts, days and amounts)';

CREATE OR REPLACE FUNCTION reco._churn_transform(p_feature text, p_value float8)
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_feature = ANY (reco._churn_log_features()) THEN ln(1 + greatest(p_value, 0)) ELSE p_value END
$$;
COMMENT ON FUNCTION reco._churn_transform(text, float8) IS
    'internal: a churn feature as the logistic regression reads it (ln(1 + x) for reco._churn_log_features())';

-- a numeric prop, or NULL when it is not a number
CREATE OR REPLACE FUNCTION reco._churn_number(p_text text)
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_text ~ '^\s*-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*$' THEN p_text::float8 END
$$;
COMMENT ON FUNCTION reco._churn_number(text) IS 'internal: a prop''s text as a number, NULL when it is not one';

-- The feature matrix: one row per (as_of, user) of the users eligible at as_of (an activity event before it,
-- the first at least churn_min_history_days old), x in the order of reco.churn_feature_names(). Only rows of
-- reco.events and reco.exposures strictly before as_of are read (the uses that count as recommendation clicks
-- too). Set-based over the (tenant_id, user_key, occurred_at) index; p_user restricts it to one user (the live
-- score). One statement: its text is built once here, the user filter spliced in, and planned with the values.
CREATE OR REPLACE FUNCTION reco._churn_matrix(p_tenant_id int, p_days date[], p_user int DEFAULT NULL)
RETURNS TABLE (as_of date, user_key int, x float8[])
-- the aggregate sorts the tenant's events by user: in memory, not in temporary files (2.5 s of 9 s for 1M events)
LANGUAGE plpgsql STABLE SET work_mem = '256MB' AS $f$
DECLARE
    _kinds text[] := ARRAY(SELECT jsonb_array_elements_text(reco.setting('churn_activity_kinds', p_tenant_id)));
    _obs int := reco.setting('churn_observation_days', p_tenant_id)::int;
    _hist int := reco.setting('churn_min_history_days', p_tenant_id)::int;
    _pay_kind text := reco.setting('churn_payment_kind', p_tenant_id) #>> '{}';
    _pay_prop text := reco.setting('churn_payment_prop', p_tenant_id) #>> '{}';
    _bandit interval := (reco.setting('bandit_window', p_tenant_id) #>> '{}')::interval;
    _one text := CASE WHEN p_user IS NULL THEN '' ELSE 'AND %s.user_key = $8' END;
BEGIN
    RETURN QUERY EXECUTE format($q$
    WITH s AS (
        SELECT DISTINCT d AS as_of, (d::timestamp AT TIME ZONE 'UTC') AS t0 FROM unnest($2) AS d
    ), ev AS (
        SELECT s.as_of, e.user_key, e.feature_key, e.success,
               extract(epoch FROM s.t0 - e.occurred_at) / 86400.0 AS age,
               s.as_of - (e.occurred_at AT TIME ZONE 'UTC')::date AS dago,   -- 1: the day before as_of
               (cardinality($3) = 0 OR e.kind = ANY ($3)) AS act,
               CASE WHEN e.kind = $4 THEN reco._churn_number(e.props ->> $5) END AS amount,
               extract(isodow FROM e.occurred_at AT TIME ZONE 'UTC') >= 6 AS weekend,
               extract(hour FROM e.occurred_at AT TIME ZONE 'UTC') < 6 AS night
        FROM s JOIN reco.events e ON e.tenant_id = $1 AND e.occurred_at < s.t0 %1$s
    ), a AS (
        SELECT ev.as_of, ev.user_key,
               min(age) FILTER (WHERE act) AS recency, max(age) FILTER (WHERE act) AS tenure,
               count(DISTINCT dago) FILTER (WHERE act AND dago <= 7) AS ad7,
               count(DISTINCT dago) FILTER (WHERE act AND dago <= $6) AS ad_obs,
               count(DISTINCT dago) FILTER (WHERE act) AS ad_total,
               count(*) FILTER (WHERE act AND dago <= 7) AS ev7,
               count(*) FILTER (WHERE act AND dago <= $6) AS ev_obs,
               count(*) FILTER (WHERE act) AS ev_total,
               count(DISTINCT feature_key) FILTER (WHERE act AND dago <= $6) AS df_obs,
               count(*) FILTER (WHERE act AND dago <= $6 AND success) AS succ_obs,
               count(*) FILTER (WHERE act AND dago <= $6 AND NOT success) AS fail_obs,
               count(*) FILTER (WHERE act AND dago <= 7 AND NOT success) AS fail7,
               count(*) FILTER (WHERE act AND dago <= 7 AND success IS NOT NULL) AS known7,
               count(*) FILTER (WHERE act AND dago <= $6 AND success IS NOT NULL) AS known_obs,
               count(*) FILTER (WHERE act AND dago <= $6 AND weekend) AS wk_obs,
               count(*) FILTER (WHERE act AND dago <= $6 AND night) AS nt_obs,
               coalesce(sum(amount), 0) AS m_total,
               coalesce(sum(amount) FILTER (WHERE dago <= $6), 0) AS m_obs
        FROM ev
        GROUP BY ev.as_of, ev.user_key
    ), x AS (
        -- exposures of the window, and whether a shown feature was used after it, within bandit_window and
        -- before as_of (reco.exposures.used_keys is not read: it may hold uses after as_of)
        SELECT s.as_of, x.user_key, count(*) AS exposures,
               count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM reco.events u
                   WHERE u.tenant_id = $1 AND u.user_key = x.user_key AND u.occurred_at >= x.shown_at
                     AND u.occurred_at < least(x.shown_at + $7, s.t0) AND u.feature_key = ANY (x.feature_keys)))
                   AS clicks
        FROM s JOIN reco.exposures x ON x.tenant_id = $1 AND x.shown_at < s.t0
                                    AND x.shown_at >= s.t0 - make_interval(days => $6) %2$s
        GROUP BY s.as_of, x.user_key
    )
    SELECT a.as_of, a.user_key, ARRAY[
        a.recency, a.tenure, a.ad7, a.ad_obs, a.ad_total, a.ev7, a.ev_obs, a.ev_total, a.df_obs,
        ln((a.ev7 / 7.0 + 0.1) / ((a.ev_obs - a.ev7) / greatest($6 - 7, 1)::float8 + 0.1)),
        (a.succ_obs + 1.0) / (a.succ_obs + a.fail_obs + 2.0),
        (a.fail7 + 0.5) / (a.known7 + 1.0),
        (a.fail_obs - a.fail7 + 0.5) / (a.known_obs - a.known7 + 1.0),
        (a.fail7 + 0.5) / (a.known7 + 1.0) - (a.fail_obs - a.fail7 + 0.5) / (a.known_obs - a.known7 + 1.0),
        (a.tenure - a.recency) / greatest(a.ad_total - 1, 1),
        a.recency * a.ad_total / (a.tenure + 1.0),
        a.wk_obs / greatest(a.ev_obs, 1)::float8,
        a.nt_obs / greatest(a.ev_obs, 1)::float8,
        coalesce(u.paid::int, 0),
        coalesce(p.price, 0),
        CASE WHEN p.quota > 0 THEN a.ev_obs * 30.0 / $6 / p.quota ELSE 0 END,
        a.m_total, a.m_obs,
        coalesce(x.exposures, 0),
        coalesce(x.clicks, 0),
        coalesce(x.clicks, 0) / greatest(x.exposures, 1)::float8
    ]::float8[]
    FROM a
    LEFT JOIN reco.users u ON u.tenant_id = $1 AND u.user_key = a.user_key
    LEFT JOIN reco.plans p ON p.tenant_id = $1 AND p.plan_id = u.attributes ->> 'plan'
    LEFT JOIN x ON x.as_of = a.as_of AND x.user_key = a.user_key
    WHERE a.tenure IS NOT NULL AND a.tenure >= $9
    ORDER BY a.as_of, a.user_key
    $q$, format(_one, 'e'), format(_one, 'x'))
    USING p_tenant_id, p_days, _kinds, _pay_kind, _pay_prop, _obs, _bandit, p_user, _hist;
END $f$;
COMMENT ON FUNCTION reco._churn_matrix(int, date[], int) IS
$c$internal: the churn features of the eligible users at each day of p_days (one user with p_user), x in the
order of reco.churn_feature_names(); reads only events and exposures before each day (00:00 UTC)$c$;

CREATE OR REPLACE FUNCTION reco.churn_features(p_tenant text, p_as_of date, p_user text DEFAULT NULL)
RETURNS TABLE (user_id text, feature text, value float8)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _user int;
BEGIN
    IF p_as_of IS NULL THEN
        RAISE EXCEPTION 'p_as_of is required' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The features read the events before this day, e.g. current_date.';
    END IF;
    IF p_user IS NOT NULL THEN
        SELECT u.user_key INTO _user FROM reco.users u WHERE u.tenant_id = _tid AND u.user_id = p_user;
        IF _user IS NULL THEN
            RAISE EXCEPTION 'unknown user "%"', p_user USING ERRCODE = 'no_data_found',
                HINT = 'Users are created by their first event (reco.ingest_events) or reco.upsert_users.';
        END IF;
    END IF;
    RETURN QUERY
    SELECT u.user_id, f.name, f.value
    FROM reco._churn_matrix(_tid, ARRAY[p_as_of], _user) AS m
    JOIN reco.users u ON u.tenant_id = _tid AND u.user_key = m.user_key
    CROSS JOIN LATERAL unnest(reco.churn_feature_names(), m.x) AS f(name, value)
    ORDER BY u.user_id, f.name;
END $$;
COMMENT ON FUNCTION reco.churn_features(text, date, text) IS
$c$the churn features of a tenant's eligible users as of a day, as long rows (user_id, feature, value): only events
before p_as_of (00:00 UTC) are read; p_user restricts it to one user. The features are listed by
reco.churn_feature_names(). Example:
SELECT * FROM reco.churn_features('default', current_date, 'u1');  -- u1 | active_days_7 | 3 ...$c$;

-- ---------------------------------------------------------------------------------------
-- Snapshots and labels
-- ---------------------------------------------------------------------------------------

-- The exclusive end of the data: p_until, else the day of the tenant's newest event (that day may be incomplete,
-- so only the days before it are complete)
CREATE OR REPLACE FUNCTION reco._churn_data_end(p_tenant_id int, p_until date DEFAULT NULL)
RETURNS date
LANGUAGE sql STABLE AS $$
    SELECT coalesce(p_until, (SELECT (max(e.occurred_at) AT TIME ZONE 'UTC')::date FROM reco.events e
                              WHERE e.tenant_id = p_tenant_id))
$$;
COMMENT ON FUNCTION reco._churn_data_end(int, date) IS
    'internal: the exclusive end of a tenant''s churn data: p_until, else the day of its newest event';

-- churned at as_of: no activity event in [as_of, as_of + window) (and before p_until), per eligible user
CREATE OR REPLACE FUNCTION reco._churn_labels(p_tenant_id int, p_days date[], p_until date DEFAULT NULL)
RETURNS TABLE (as_of date, user_key int, churned boolean)
LANGUAGE sql STABLE AS $$
    WITH k AS (SELECT ARRAY(SELECT jsonb_array_elements_text(reco.setting('churn_activity_kinds', p_tenant_id)))
                          AS kinds,
                      reco.setting('churn_window_days', p_tenant_id)::int AS win,
                      reco.setting('churn_min_history_days', p_tenant_id)::int AS hist)
    SELECT d.as_of, f.user_key,
           NOT EXISTS (SELECT 1 FROM reco.events e
                       WHERE e.tenant_id = p_tenant_id AND e.user_key = f.user_key
                         AND e.occurred_at >= (d.as_of::timestamp AT TIME ZONE 'UTC')
                         AND e.occurred_at < ((least(d.as_of + k.win, coalesce(p_until, 'infinity'))::timestamp)
                                              AT TIME ZONE 'UTC')
                         AND (cardinality(k.kinds) = 0 OR e.kind = ANY (k.kinds)))
    FROM k
    CROSS JOIN unnest(p_days) AS d(as_of)
    CROSS JOIN LATERAL (
        -- the eligible users: the first activity before as_of, at least churn_min_history_days before it
        SELECT e.user_key
        FROM reco.events e
        WHERE e.tenant_id = p_tenant_id AND e.occurred_at < (d.as_of::timestamp AT TIME ZONE 'UTC')
          AND (cardinality(k.kinds) = 0 OR e.kind = ANY (k.kinds))
        GROUP BY e.user_key
        HAVING min(e.occurred_at) <= (d.as_of::timestamp AT TIME ZONE 'UTC') - make_interval(days => k.hist)
    ) f
$$;
COMMENT ON FUNCTION reco._churn_labels(int, date[], date) IS
    'internal: the churn label of every eligible user at each of p_days (no activity in [as_of, as_of + churn_window_days))';

CREATE OR REPLACE FUNCTION reco.churn_labels(p_tenant text, p_as_of date)
RETURNS TABLE (user_id text, churned boolean, matured boolean)
LANGUAGE sql STABLE AS $$
    SELECT u.user_id, l.churned,
           p_as_of + reco.setting('churn_window_days', reco._tenant_id(p_tenant))::int
               <= reco._churn_data_end(reco._tenant_id(p_tenant))
    FROM reco._churn_labels(reco._tenant_id(p_tenant), ARRAY[p_as_of]) AS l
    JOIN reco.users u ON u.tenant_id = reco._tenant_id(p_tenant) AND u.user_key = l.user_key
    ORDER BY u.user_id
$$;
COMMENT ON FUNCTION reco.churn_labels(text, date) IS
$c$the churn label of each eligible user at a snapshot (as_of = the day after snapshot day t): churned when no
activity event (setting churn_activity_kinds) falls in [as_of, as_of + churn_window_days), i.e. the days t+1 ..
t+window; matured is false while that window reaches past the newest event's day. Eligible: a first activity at
least churn_min_history_days before as_of. Example:
SELECT * FROM reco.churn_labels('default', current_date - 30);  -- u1 | false | true$c$;

-- The snapshot days of training: the newest matured ones (as_of + window <= the data's end) validate; the
-- training days come before them, early enough that their label windows end by the first validation day, so
-- no training label reads an event the validation's features or labels could not have seen at that day.
CREATE OR REPLACE FUNCTION reco.churn_snapshots(p_tenant text, p_until date DEFAULT NULL)
RETURNS TABLE (as_of date, role text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _win int := reco.setting('churn_window_days', _tid)::int;
    _every int := reco.setting('churn_snapshot_every_days', _tid)::int;
    _ntrain int := reco.setting('churn_train_snapshots', _tid)::int;
    _nval int := reco.setting('churn_validation_snapshots', _tid)::int;
    _hist int := reco.setting('churn_min_history_days', _tid)::int;
    _end date := reco._churn_data_end(_tid, p_until);
    _first date;
    _newest date;
    _oldest_val date;
BEGIN
    SELECT (min(e.occurred_at) AT TIME ZONE 'UTC')::date INTO _first
    FROM reco.events e WHERE e.tenant_id = _tid AND e.occurred_at < (_end::timestamp AT TIME ZONE 'UTC');
    IF _first IS NULL THEN
        RAISE EXCEPTION 'tenant "%" has no events to train a churn model on', coalesce(p_tenant, 'default')
            USING ERRCODE = 'data_exception', HINT = 'Ingest events first (reco.ingest_events).';
    END IF;
    _newest := _end - _win;
    _oldest_val := _newest - (_nval - 1) * _every;
    -- a training day needs users of churn_min_history_days at it and its label window before the validation
    IF _oldest_val - _win <= _first + _hist THEN
        RAISE EXCEPTION 'tenant "%" has too short a history for a churn model: % days (% to %)',
                coalesce(p_tenant, 'default'), _end - _first, _first, _end
            USING ERRCODE = 'data_exception',
                  HINT = format('Training needs more than %s days: churn_min_history_days (%s) + a training '
                                'snapshot''s window and the validation''s (churn_window_days %s each) + '
                                '(churn_validation_snapshots - 1) * churn_snapshot_every_days (%s); shorten '
                                'those settings or wait for more data.',
                                _hist + 2 * _win + (_nval - 1) * _every, _hist, _win, (_nval - 1) * _every);
    END IF;
    RETURN QUERY
    SELECT (_newest - i * _every)::date, 'validation' FROM generate_series(0, _nval - 1) AS i
    UNION ALL
    SELECT (_oldest_val - _win - i * _every)::date, 'train' FROM generate_series(0, _ntrain - 1) AS i
    WHERE _oldest_val - _win - i * _every > _first + _hist
    ORDER BY 1;
END $$;
COMMENT ON FUNCTION reco.churn_snapshots(text, date) IS
$c$the snapshot days (as_of) churn_train uses, with their role: the newest churn_validation_snapshots matured days
(as_of + churn_window_days <= the data's end: p_until, else the newest event's day) validate; up to
churn_train_snapshots days every churn_snapshot_every_days before them train, each at least churn_window_days
before the first validation day, so every training label is known at validation time (the time split; the
same users appear in both, as they do when the model is used). Too short a history raises data_exception.
Example: SELECT * FROM reco.churn_snapshots('default');  -- 2026-09-01 | train ... 2026-11-24 | validation$c$;

-- The training rows: the features and the label of every eligible user at every snapshot day
CREATE OR REPLACE FUNCTION reco._churn_training_rows(p_tenant text, p_until date DEFAULT NULL)
RETURNS TABLE (as_of date, role text, user_key int, x float8[], churned boolean)
LANGUAGE sql STABLE AS $$
    WITH s AS (SELECT * FROM reco.churn_snapshots(p_tenant, p_until)),
    d AS (SELECT array_agg(s.as_of) AS days FROM s)
    SELECT m.as_of, s.role, m.user_key, m.x, l.churned
    FROM d
    CROSS JOIN LATERAL reco._churn_matrix(reco._tenant_id(p_tenant), d.days) AS m
    JOIN s ON s.as_of = m.as_of
    JOIN reco._churn_labels(reco._tenant_id(p_tenant), (SELECT days FROM d), p_until) AS l
      ON l.as_of = m.as_of AND l.user_key = m.user_key
    ORDER BY m.as_of, m.user_key
$$;
COMMENT ON FUNCTION reco._churn_training_rows(text, date) IS
    'internal: features and churn label of every eligible user at each snapshot day of reco.churn_snapshots (read by jobs/churn.py)';
