-- The console's pages (/console in the REST API), one function per page: each returns the page's
-- data as one JSON document, and the page is a rendering of it. An analyst runs the same call:
--
--   SELECT reco.console_overview();                      -- catalog, users, events per day, jobs, last evaluation
--   SELECT * FROM reco.console_events_per_day(30);       -- the overview's chart, as rows
--   SELECT reco.console_users('U1');                     -- users from 'U1' on (id order)
--   SELECT reco.console_user('U42');                     -- events, interactions, recommendations and why, segment, priors
--   SELECT reco.console_features('removal');             -- the catalog by usage, filtered
--   SELECT reco.console_feature('background-removal');   -- usage over time, similar features, segments
--   SELECT reco.console_evaluations();                   -- NDCG/Hit per model over time, the tune job's trials
--   SELECT reco.console_experiments();                   -- every experiment
--   SELECT reco.console_experiment('usercf-boost');      -- its report and sequential boundaries
--
-- Every function takes the tenant as its last argument (default: the reco.tenant setting, else
-- 'default'), reads only (the API runs them in a read-only transaction), and bounds every list.
-- "Days" are UTC days ending on the day of the tenant's latest event (not today: imported history
-- can be old). Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

-- ---------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------

-- The newest event of a tenant (max of reco.interactions.last_at: far fewer rows than events).
CREATE OR REPLACE FUNCTION reco._console_last_event(p_tenant_id int)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT max(i.last_at) FROM reco.interactions i WHERE i.tenant_id = p_tenant_id
$$;
COMMENT ON FUNCTION reco._console_last_event(int) IS 'internal: the time of a tenant''s newest event (the console''s charts end on its day)';

-- The first day of a chart of p_days days ending on p_last: not before the tenant's first event.
CREATE OR REPLACE FUNCTION reco._console_first_day(p_tenant_id int, p_last date, p_days int)
RETURNS date
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT greatest(p_last - (p_days - 1),
                    (SELECT (min(i.first_at) AT TIME ZONE 'UTC')::date FROM reco.interactions i
                     WHERE i.tenant_id = p_tenant_id))
$$;
COMMENT ON FUNCTION reco._console_first_day(int, date, int) IS 'internal: the first day of a console chart of p_days days ending on p_last, not before the tenant''s first event';

-- A page size: p_limit within [1, p_max] (NULL: p_default).
CREATE OR REPLACE FUNCTION reco._console_limit(p_limit int, p_default int, p_max int)
RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT least(greatest(coalesce(p_limit, p_default), 1), p_max)
$$;
COMMENT ON FUNCTION reco._console_limit(int, int, int) IS 'internal: a console page size, p_limit within [1, p_max] (NULL: p_default)';

-- A feature as the pages show it.
CREATE OR REPLACE FUNCTION reco._console_feature_ref(p_tenant_id int, p_feature_id text)
RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT json_build_object('feature_id', f.feature_id, 'name', f.name, 'category', f.category)
    FROM reco.features f WHERE f.tenant_id = p_tenant_id AND f.feature_id = p_feature_id
$$;
COMMENT ON FUNCTION reco._console_feature_ref(int, text) IS 'internal: a feature as the console shows it (id, name, category)';

-- ---------------------------------------------------------------------------------------
-- Overview
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.console_events_per_day(p_days int DEFAULT 30, p_tenant text DEFAULT NULL)
RETURNS TABLE (day date, events bigint, users bigint, successes bigint, failures bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _days int := least(greatest(coalesce(p_days, 30), 1), 366);
    _last date := (reco._console_last_event(_tid) AT TIME ZONE 'UTC')::date;
    _first date := reco._console_first_day(_tid, _last, _days);
BEGIN
    IF _last IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT d.day::date, coalesce(x.events, 0), coalesce(x.users, 0), coalesce(x.successes, 0), coalesce(x.failures, 0)
    FROM generate_series(_first, _last, interval '1 day') AS d(day)
    LEFT JOIN (
        SELECT (e.occurred_at AT TIME ZONE 'UTC')::date AS day, count(*) AS events,
               count(DISTINCT e.user_key) AS users,
               count(*) FILTER (WHERE e.success) AS successes, count(*) FILTER (WHERE NOT e.success) AS failures
        FROM reco.events e
        -- a range on the partition key: only the partitions of these days are read
        WHERE e.tenant_id = _tid
          AND e.occurred_at >= _first::timestamp AT TIME ZONE 'UTC'
          AND e.occurred_at < (_last + 1)::timestamp AT TIME ZONE 'UTC'
        GROUP BY 1) AS x ON x.day = d.day::date
    ORDER BY 1;
END $$;
COMMENT ON FUNCTION reco.console_events_per_day(int, text) IS
$c$events per UTC day over the p_days days (1–366, default 30) ending on the day of the tenant's latest event (none
before its first event): events, distinct users, successful and failed uses; days without events are 0. The console's overview chart.
Example: SELECT * FROM reco.console_events_per_day(30);$c$;

CREATE OR REPLACE FUNCTION reco.console_overview(p_tenant text DEFAULT NULL)
RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _slug text := (SELECT t.slug FROM reco.tenants t WHERE t.tenant_id = _tid);
BEGIN
    RETURN json_build_object(
        'tenant', _slug,
        'catalog', (SELECT json_build_object('features', count(*), 'active', count(*) FILTER (WHERE f.active),
                                             'paid_only', count(*) FILTER (WHERE f.requires_paid),
                                             'categories', count(DISTINCT f.category))
                    FROM reco.features f WHERE f.tenant_id = _tid),
        'users', (SELECT json_build_object('users', count(*), 'paid', count(*) FILTER (WHERE u.paid))
                  FROM reco.users u WHERE u.tenant_id = _tid),
        'usage', (SELECT json_build_object('events', coalesce(sum(i.uses), 0), 'pairs', count(*),
                                           'active_users', count(DISTINCT i.user_key),
                                           'first_at', min(i.first_at), 'last_at', max(i.last_at))
                  FROM reco.interactions i WHERE i.tenant_id = _tid),
        'events_per_day', (SELECT coalesce(json_agg(row_to_json(d) ORDER BY d.day), '[]')
                           FROM reco.console_events_per_day(30, _slug) AS d),
        -- every job of the catalog with its latest run (this tenant's), latest success and, when its
        -- Python step waits, since when the tenant serves a fallback (reco.job_status)
        'jobs', (SELECT coalesce(json_agg(json_build_object(
                            'job', j.job, 'description', j.description, 'schedule', j.schedule, 'in_all', j.in_all,
                            'status', j.status, 'started_at', j.started_at,
                            'seconds', extract(epoch FROM j.finished_at - j.started_at),
                            'rows', j.rows_written, 'message', j.message,
                            'last_success_at', j.last_success_at, 'waiting_since', j.waiting_since,
                            'waiting_for', j.waiting_for) ORDER BY j.position), '[]')
                 FROM reco.job_status j WHERE j.tenant = _slug),
        'fallbacks', (SELECT coalesce(json_agg(json_build_object('job', j.job, 'since', j.waiting_since,
                                                                 'reason', j.waiting_for) ORDER BY j.waiting_since), '[]')
                      FROM reco.job_status j WHERE j.tenant = _slug AND j.waiting_since IS NOT NULL),
        'runs', (SELECT coalesce(json_agg(json_build_object(
                            'run_id', r.run_id, 'job', r.job, 'status', r.status, 'started_at', r.started_at,
                            'seconds', extract(epoch FROM coalesce(r.finished_at, clock_timestamp()) - r.started_at),
                            'rows', r.rows_written, 'message', r.message) ORDER BY r.started_at DESC), '[]')
                 FROM (SELECT * FROM reco.job_runs r WHERE r.tenant = _slug
                       ORDER BY r.started_at DESC LIMIT 30) AS r),
        'evaluation', (SELECT json_build_object(
                                'run_id', r.run_id, 'k', r.k, 'users', r.users, 'finished_at', r.finished_at,
                                'seconds', extract(epoch FROM r.finished_at - r.started_at),
                                'models', (SELECT json_agg(json_build_object(
                                                    'model', x.model, 'ndcg', x.ndcg, 'hit_rate', x.hit_rate,
                                                    'mrr', x.mrr, 'coverage', x.coverage, 'users', x.users)
                                                  ORDER BY x.ndcg DESC)
                                           FROM reco.evaluation_results x WHERE x.run_id = r.run_id))
                       FROM reco.evaluation_runs r WHERE r.tenant = _slug AND r.kind = 'evaluate'
                       ORDER BY r.started_at DESC LIMIT 1),
        'experiments', (SELECT json_build_object('total', count(*), 'running', count(*) FILTER (WHERE e.status = 'running'))
                        FROM reco.experiments e WHERE e.tenant_id = _tid));
END $$;
COMMENT ON FUNCTION reco.console_overview(text) IS
$c$the console's overview of a tenant as JSON: catalog size (features, active, paid-only, categories), users (all,
paid), usage (events, user × feature pairs, users with events, first and last event), events per day (30 days,
reco.console_events_per_day), every job with its latest run and latest success, fallbacks (the jobs whose Python
step waits for `reco jobs loop`, since when and what is served meanwhile), the 30 latest job runs with
their durations, the latest evaluation (per model NDCG, HitRate, MRR, coverage) and the experiments.
Example: SELECT reco.console_overview();$c$;

-- ---------------------------------------------------------------------------------------
-- Users
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.console_users(p_from text DEFAULT NULL, p_limit int DEFAULT 50,
                                              p_tenant text DEFAULT NULL)
RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT coalesce(json_agg(json_build_object(
               'user_id', u.user_id, 'paid', u.paid, 'attributes', u.attributes,
               'features', s.features, 'uses', s.uses, 'last_at', s.last_at) ORDER BY u.user_id), '[]')
    FROM (SELECT * FROM reco.users u
          WHERE u.tenant_id = reco._tenant_id(p_tenant) AND u.user_id >= coalesce(p_from, '')
          ORDER BY u.user_id LIMIT reco._console_limit(p_limit, 50, 200)) AS u
    CROSS JOIN LATERAL (SELECT count(*) AS features, coalesce(sum(i.uses), 0) AS uses, max(i.last_at) AS last_at
                        FROM reco.interactions i WHERE i.tenant_id = u.tenant_id AND i.user_key = u.user_key) AS s
$$;
COMMENT ON FUNCTION reco.console_users(text, int, text) IS
$c$users in id order from p_from on (an index range: the console's user search), at most p_limit (default 50, at
most 200), as a JSON array: user_id, paid, attributes, features used, uses, last use.
Example: SELECT reco.console_users('U1', 10);$c$;

CREATE OR REPLACE FUNCTION reco.console_user(p_user_id text, p_tenant text DEFAULT NULL)
RETURNS json
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _slug text := (SELECT t.slug FROM reco.tenants t WHERE t.tenant_id = _tid);
    _u reco.users;
    _seg record;
    _recs json;
BEGIN
    SELECT * INTO _u FROM reco.users u WHERE u.tenant_id = _tid AND u.user_id = p_user_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO _seg
    FROM reco._serving_segments(_tid, _u.paid, _u.attributes, reco._segment_attributes(_tid),
                                reco.setting('min_segment_users', _tid)::int);
    -- what recommend_features answers now (it writes nothing), with the features named
    SELECT json_agg(json_build_object(
               'rank', r.rank, 'feature_id', r.feature_id, 'name', f.name, 'category', f.category,
               'score', r.score, 'seen', coalesce((r.reasons ->> 'seen')::boolean, false),
               'segment', r.reasons ->> 'segment',
               'components', (SELECT json_object_agg(c.key, c.value ORDER BY c.key)
                              FROM jsonb_each(r.reasons) AS c
                              WHERE jsonb_typeof(c.value) = 'number'),
               'because', (SELECT coalesce(json_agg(json_build_object('feature_id', b.id, 'name', g.name) ORDER BY b.n), '[]')
                           FROM jsonb_array_elements_text(coalesce(r.reasons -> 'because', '[]')) WITH ORDINALITY AS b(id, n)
                           LEFT JOIN reco.features g ON g.tenant_id = _tid AND g.feature_id = b.id))
             ORDER BY r.rank)
    INTO _recs
    FROM reco.recommend_features(p_user_id, 10, '{}', _slug) AS r
    LEFT JOIN reco.features f ON f.tenant_id = _tid AND f.feature_id = r.feature_id;

    RETURN json_build_object(
        'user', json_build_object('user_id', _u.user_id, 'paid', _u.paid, 'attributes', _u.attributes,
                                  'created_at', _u.created_at, 'updated_at', _u.updated_at),
        'segment', json_build_object(
            'serving', _seg.serving_attribute || '=' || _seg.serving_value,
            'min_users', reco.setting('min_segment_users', _tid)::int,
            'segments', (SELECT coalesce(json_agg(json_build_object(
                                    'attribute', s.a, 'value', s.v, 'users', g.users,
                                    'serving', s.a = _seg.serving_attribute AND s.v = _seg.serving_value) ORDER BY s.n), '[]')
                         FROM unnest(_seg.attributes, _seg.vals) WITH ORDINALITY AS s(a, v, n)
                         LEFT JOIN reco.segments g ON g.tenant_id = _tid AND g.attribute = s.a AND g.value = s.v)),
        -- per segment attribute of the user: the cohort prior's top features, P(feature | attribute = value)
        'priors', (SELECT coalesce(json_agg(json_build_object(
                              'attribute', s.a, 'value', s.v,
                              'features', (SELECT coalesce(json_agg(json_build_object(
                                                      'feature_id', f.feature_id, 'name', f.name, 'prob', p.prob)
                                                    ORDER BY p.prob DESC), '[]')
                                           FROM (SELECT * FROM reco.cohort_priors p
                                                 WHERE p.tenant_id = _tid AND p.attribute = s.a AND p.value = s.v
                                                 ORDER BY p.prob DESC LIMIT 8) AS p
                                           JOIN reco.features f ON f.tenant_id = _tid AND f.feature_key = p.feature_key))
                            ORDER BY s.n), '[]')
                   FROM unnest(_seg.attributes, _seg.vals) WITH ORDINALITY AS s(a, v, n)),
        'recommendations', coalesce(_recs, '[]'),
        'interactions_total', (SELECT count(*) FROM reco.interactions i WHERE i.tenant_id = _tid AND i.user_key = _u.user_key),
        'interactions', (SELECT coalesce(json_agg(json_build_object(
                                   'feature_id', f.feature_id, 'name', f.name, 'category', f.category,
                                   'uses', i.uses, 'successes', i.successes, 'failures', i.failures,
                                   'first_at', i.first_at, 'last_at', i.last_at, 'weight', i.weight)
                                 ORDER BY i.last_at DESC, f.feature_id), '[]')
                         FROM (SELECT * FROM reco.interactions i WHERE i.tenant_id = _tid AND i.user_key = _u.user_key
                               ORDER BY i.last_at DESC LIMIT 50) AS i
                         JOIN reco.features f ON f.tenant_id = _tid AND f.feature_key = i.feature_key),
        'events', (SELECT coalesce(json_agg(json_build_object(
                             'occurred_at', e.occurred_at, 'feature_id', f.feature_id, 'name', f.name,
                             'kind', e.kind, 'success', e.success, 'event_id', e.event_id)
                           ORDER BY e.occurred_at DESC, e.event_id), '[]')
                   FROM (SELECT * FROM reco.events e WHERE e.tenant_id = _tid AND e.user_key = _u.user_key
                         ORDER BY e.occurred_at DESC LIMIT 50) AS e
                   JOIN reco.features f ON f.tenant_id = _tid AND f.feature_key = e.feature_key),
        'exposures', (SELECT coalesce(json_agg(json_build_object(
                                'shown_at', x.shown_at, 'scenario', x.scenario, 'variant', x.variant,
                                'experiment', (SELECT m.name FROM reco.experiments m WHERE m.experiment_id = x.experiment_id),
                                'segment', x.segment,
                                'shown', (SELECT coalesce(json_agg(f.feature_id ORDER BY k.n), '[]')
                                          FROM unnest(x.feature_keys) WITH ORDINALITY AS k(fk, n)
                                          JOIN reco.features f ON f.tenant_id = _tid AND f.feature_key = k.fk),
                                'used', (SELECT coalesce(json_agg(f.feature_id ORDER BY f.feature_id), '[]')
                                         FROM reco.features f
                                         WHERE f.tenant_id = _tid AND f.feature_key = ANY (x.used_keys)))
                              ORDER BY x.shown_at DESC), '[]')
                      FROM (SELECT * FROM reco.exposures x WHERE x.tenant_id = _tid AND x.user_key = _u.user_key
                            ORDER BY x.shown_at DESC LIMIT 10) AS x));
END $$;
COMMENT ON FUNCTION reco.console_user(text, text) IS
$c$the console's page of one user as JSON (NULL for an unknown user): the user and attributes; the segments
(serving: where popularity and bandits are read, min_segment_users) and, per segment attribute, the cohort
prior's top 8 features; the 10 recommendations of reco.recommend_features now, each with its score components
and "because" (the user's features that led to it); the 50 latest interactions and events; the 10 latest
exposures (what was shown, what was used). Writes nothing. Example: SELECT reco.console_user('U42');$c$;

-- ---------------------------------------------------------------------------------------
-- Features
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.console_features(p_search text DEFAULT NULL, p_limit int DEFAULT 100,
                                                 p_tenant text DEFAULT NULL)
RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT coalesce(json_agg(json_build_object(
               'feature_id', x.feature_id, 'name', x.name, 'category', x.category, 'requires_paid', x.requires_paid,
               'active', x.active, 'users', x.users, 'uses', x.uses, 'success_rate', x.success_rate)
             ORDER BY x.users DESC NULLS LAST, x.feature_id), '[]')
    FROM (SELECT f.feature_id, f.name, f.category, f.requires_paid, f.active, s.users, s.uses,
                 CASE WHEN s.successes + s.failures > 0 THEN s.success_rate END AS success_rate  -- none: NULL, not 50 %
          FROM reco.features f
          LEFT JOIN reco.feature_stats s ON s.tenant_id = f.tenant_id AND s.attribute = '*' AND s.value = '*'
                                        AND s.feature_key = f.feature_key
          WHERE f.tenant_id = reco._tenant_id(p_tenant)
            AND (coalesce(p_search, '') = ''
                 OR strpos(lower(f.feature_id), lower(p_search)) > 0 OR strpos(lower(f.name), lower(p_search)) > 0
                 OR strpos(lower(f.category), lower(p_search)) > 0)
          ORDER BY s.users DESC NULLS LAST, f.feature_id
          LIMIT reco._console_limit(p_limit, 100, 500)) AS x
$$;
COMMENT ON FUNCTION reco.console_features(text, int, text) IS
$c$the catalog by number of users (as of the feature_stats job), optionally only the features whose id, name or
category contains p_search (case-insensitive), at most p_limit (default 100, at most 500), as a JSON array.
Example: SELECT reco.console_features('removal');$c$;

CREATE OR REPLACE FUNCTION reco.console_feature(p_feature_id text, p_days int DEFAULT 90, p_tenant text DEFAULT NULL)
RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _slug text := (SELECT t.slug FROM reco.tenants t WHERE t.tenant_id = _tid);
    _f reco.features;
    _days int := least(greatest(coalesce(p_days, 90), 1), 366);
    _last date := (reco._console_last_event(_tid) AT TIME ZONE 'UTC')::date;
    _first date := reco._console_first_day(_tid, _last, _days);
BEGIN
    SELECT * INTO _f FROM reco.features f WHERE f.tenant_id = _tid AND f.feature_id = p_feature_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN json_build_object(
        'feature', json_build_object('feature_id', _f.feature_id, 'name', _f.name, 'category', _f.category,
                                     'requires_paid', _f.requires_paid, 'tags', _f.tags, 'description', _f.description,
                                     'active', _f.active, 'created_at', _f.created_at, 'updated_at', _f.updated_at),
        'totals', (SELECT json_build_object('users', count(*), 'uses', coalesce(sum(i.uses), 0),
                                            'successes', coalesce(sum(i.successes), 0),
                                            'failures', coalesce(sum(i.failures), 0),
                                            'first_at', min(i.first_at), 'last_at', max(i.last_at))
                   FROM reco.interactions i WHERE i.tenant_id = _tid AND i.feature_key = _f.feature_key),
        -- uses and users per UTC day, and the users who used it for the first time that day
        'usage', (SELECT coalesce(json_agg(json_build_object('day', d.day::date, 'events', coalesce(x.events, 0),
                                                             'users', coalesce(x.users, 0),
                                                             'new_users', coalesce(n.users, 0)) ORDER BY d.day), '[]')
                  FROM generate_series(_first, _last, interval '1 day') AS d(day)
                  LEFT JOIN (SELECT (e.occurred_at AT TIME ZONE 'UTC')::date AS day, count(*) AS events,
                                    count(DISTINCT e.user_key) AS users
                             FROM reco.events e
                             WHERE e.tenant_id = _tid AND e.feature_key = _f.feature_key
                               AND e.occurred_at >= _first::timestamp AT TIME ZONE 'UTC'
                               AND e.occurred_at < (_last + 1)::timestamp AT TIME ZONE 'UTC'
                             GROUP BY 1) AS x ON x.day = d.day::date
                  LEFT JOIN (SELECT (i.first_at AT TIME ZONE 'UTC')::date AS day, count(*) AS users
                             FROM reco.interactions i
                             WHERE i.tenant_id = _tid AND i.feature_key = _f.feature_key
                               AND i.first_at >= _first::timestamp AT TIME ZONE 'UTC'
                             GROUP BY 1) AS n ON n.day = d.day::date
                  WHERE _last IS NOT NULL),
        'similar', (SELECT coalesce(json_agg(json_build_object('rank', s.rank, 'feature_id', s.feature_id, 'name', g.name,
                                                               'category', g.category, 'score', s.score, 'source', s.source)
                                             ORDER BY s.rank), '[]')
                    FROM reco.similar_features(_f.feature_id, 10, _slug) AS s
                    JOIN reco.features g ON g.tenant_id = _tid AND g.feature_id = s.feature_id),
        -- per segment: its users who used the feature, their share of the segment, and that share
        -- against everyone's (lift > 1: the segment uses it more than the average user)
        'segments', (SELECT coalesce(json_agg(json_build_object(
                                'attribute', s.attribute, 'value', s.value, 'users', s.users, 'uses', s.uses,
                                'segment_users', g.users, 'share', s.users::float8 / nullif(g.users, 0),
                                'lift', (s.users::float8 / nullif(g.users, 0)) / nullif(a.users::float8 / nullif(ga.users, 0), 0),
                                -- NULL, not the smoothed 50 %, where no use has a success or failure recorded
                                'success_rate', CASE WHEN s.successes + s.failures > 0 THEN s.success_rate END,
                                'prior', p.prob)
                              ORDER BY s.attribute, s.users DESC, s.value), '[]')
                     FROM (SELECT * FROM reco.feature_stats s
                           WHERE s.tenant_id = _tid AND s.feature_key = _f.feature_key AND s.attribute <> '*'
                           ORDER BY s.users DESC LIMIT 50) AS s
                     JOIN reco.segments g ON g.tenant_id = _tid AND g.attribute = s.attribute AND g.value = s.value
                     LEFT JOIN reco.feature_stats a ON a.tenant_id = _tid AND a.attribute = '*' AND a.value = '*'
                                                   AND a.feature_key = _f.feature_key
                     LEFT JOIN reco.segments ga ON ga.tenant_id = _tid AND ga.attribute = '*' AND ga.value = '*'
                     LEFT JOIN reco.cohort_priors p ON p.tenant_id = _tid AND p.attribute = s.attribute
                                                   AND p.value = s.value AND p.feature_key = _f.feature_key));
END $$;
COMMENT ON FUNCTION reco.console_feature(text, int, text) IS
$c$the console's page of one feature as JSON (NULL for an unknown feature): the feature; its users, uses, successes
and failures; usage per UTC day over p_days (default 90) ending on the tenant's latest event day, none before its
first (events, users, first-time users); its 10 most similar features (reco.similar_features); the segments that use it (as of the
feature_stats job; at most 50): users, share of the segment, lift against all users, success rate, cohort prior.
Example: SELECT reco.console_feature('background-removal');$c$;

-- ---------------------------------------------------------------------------------------
-- Evaluations and the tune job
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.console_evaluations(p_limit int DEFAULT 50, p_tenant text DEFAULT NULL)
RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _slug text := (SELECT t.slug FROM reco.tenants t WHERE t.tenant_id = reco._tenant_id(p_tenant));
    _limit int := reco._console_limit(p_limit, 50, 500);
BEGIN
    RETURN json_build_object(
        'tenant', _slug,
        -- the latest p_limit evaluation runs, oldest first (the chart's order)
        'runs', (SELECT coalesce(json_agg(json_build_object(
                            'run_id', r.run_id, 'k', r.k, 'users', r.users, 'started_at', r.started_at,
                            'finished_at', r.finished_at, 'seconds', extract(epoch FROM r.finished_at - r.started_at),
                            'provenance', r.provenance,
                            'models', (SELECT json_agg(json_build_object(
                                                  'model', x.model, 'ndcg', x.ndcg, 'hit_rate', x.hit_rate,
                                                  'mrr', x.mrr, 'coverage', x.coverage, 'users', x.users)
                                                ORDER BY x.model)
                                       FROM reco.evaluation_results x WHERE x.run_id = r.run_id))
                          ORDER BY r.started_at, r.run_id), '[]')
                 FROM (SELECT * FROM reco.evaluation_runs r WHERE r.tenant = _slug AND r.kind = 'evaluate'
                       ORDER BY r.started_at DESC LIMIT _limit) AS r),
        -- the latest 10 tunes, from their final decision (reco.tune_summaries): NDCG@10 on the holdout of
        -- the tenant's settings, of the tuned configuration and of what is served, the gain and its
        -- fold, the settings applied (or that would be)
        'tunes', (SELECT coalesce(json_agg(t ORDER BY t.finished_at DESC), '[]')
                  FROM (SELECT s.tune, s.started_at, s.finished_at, s.trials, s.confirmations,
                               round(s.baseline_ndcg::numeric, 4) AS baseline_ndcg,
                               round(s.tuned_ndcg::numeric, 4) AS tuned_ndcg, s.served,
                               round(s.served_ndcg::numeric, 4) AS served_ndcg, round(s.gain::numeric, 4) AS gain,
                               round(s.se::numeric, 4) AS se, s.users, s.fold, s.settings, s.applied, s.note
                        FROM reco.tune_summaries s
                        WHERE s.tenant = _slug
                        ORDER BY s.finished_at DESC LIMIT 10) AS t),
        -- what each stage of the latest tune chose, whether it is applied, and the fold of its gain
        'stages', (SELECT coalesce(json_agg(json_build_object(
                              'stage', d.stage, 'chosen', d.settings, 'applied', d.applied,
                              'changed', d.kept <> d.incumbent, 'gain', round(d.gain::numeric, 4),
                              'se', round(d.se::numeric, 4), 'fold', d.fold, 'note', d.note)
                            ORDER BY d.position), '[]')
                   FROM reco.tune_decisions d
                   WHERE d.tenant = _slug AND d.stage <> 'final'
                     AND d.tune = (SELECT s.tune FROM reco.tune_summaries s WHERE s.tenant = _slug
                                   ORDER BY s.finished_at DESC LIMIT 1)),
        -- the trials of the latest tune (its second fold's too, named), in the order they ran
        'trials', (SELECT coalesce(json_agg(json_build_object(
                              'run_id', tt.run_id, 'tune', tt.tune, 'fold', tt.fold, 'stage', tt.stage,
                              'trial', tt.trial, 'users', tt.users, 'ndcg', tt.ndcg, 'hit_rate', tt.hit_rate,
                              'kept', tt.kept, 'chosen', tt.chosen, 'applied', tt.applied, 'served', tt.served,
                              'gain', tt.gain, 'se', tt.se, 'seconds', extract(epoch FROM tt.took))
                            ORDER BY tt.run_id), '[]')
                   FROM (SELECT * FROM reco.tune_trials tt
                         WHERE tt.tenant = _slug
                           AND split_part(tt.tune, '/', 1) = (SELECT split_part(t2.tune, '/', 1) FROM reco.tune_trials t2
                                                              WHERE t2.tenant = _slug ORDER BY t2.run_id DESC LIMIT 1)
                         ORDER BY tt.run_id LIMIT 500) AS tt));
END $$;
COMMENT ON FUNCTION reco.console_evaluations(int, text) IS
$c$the console's evaluation history as JSON: the latest p_limit (default 50, at most 500) runs of reco.evaluate,
oldest first, each with NDCG, HitRate, MRR and coverage per model; the latest 10 tunes (reco.tune_summaries: NDCG@10
on the holdout of the tenant's settings, the tuned configuration and what is served, gain ± se and its fold, the
settings applied); what each stage of the latest tune chose and whether it is applied (reco.tune_decisions); the
trials of the latest tune, second fold included (reco.tune_trials).
Example: SELECT reco.console_evaluations();$c$;

-- ---------------------------------------------------------------------------------------
-- Experiments
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.console_experiments(p_tenant text DEFAULT NULL)
RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT coalesce(json_agg(row_to_json(x) ORDER BY x.status = 'running' DESC, x.created_at DESC, x.name), '[]')
    FROM (SELECT e.name, e.scenario, e.kind, e.status, e.traffic, e.primary_metric, e.secondary_metrics,
                 e.guardrail_metrics, e.looks, e.planned_users, e.created_at, e.started_at, e.stopped_at,
                 (SELECT json_agg(json_build_object('name', v.name, 'weight', v.weight, 'overrides', v.overrides)
                                  ORDER BY v.position)
                  FROM reco.experiment_variants v WHERE v.experiment_id = e.experiment_id) AS variants,
                 e.description
          FROM reco.experiments e
          WHERE e.tenant_id = reco._tenant_id(p_tenant)
          ORDER BY e.status = 'running' DESC, e.created_at DESC, e.name
          LIMIT 200) AS x
$$;
COMMENT ON FUNCTION reco.console_experiments(text) IS
$c$the console's list of experiments as JSON (running first, then newest; at most 200): scenario, kind, status,
traffic share, metrics, looks, planned users, dates, variants (name, weight, overrides), description.
Example: SELECT reco.console_experiments();$c$;

CREATE OR REPLACE FUNCTION reco.console_experiment(p_name text, p_tenant text DEFAULT NULL)
RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _slug text := (SELECT t.slug FROM reco.tenants t WHERE t.tenant_id = _tid);
    _e reco.experiments;
    _report json;
    _error text;
    _users bigint;
    _looks json;
BEGIN
    SELECT * INTO _e FROM reco.experiments e WHERE e.tenant_id = _tid AND e.name = p_name;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF _e.status <> 'draft' THEN
        BEGIN
            SELECT json_agg(to_jsonb(r) - 'ordinality' ORDER BY r.ordinality) INTO _report
            FROM reco.experiment_report(_e.name, _slug) WITH ORDINALITY AS r;
        EXCEPTION WHEN OTHERS THEN
            -- a report that cannot be made (an undefined function in an older schema, a metric
            -- that cannot be computed): the page says why, the rest of it is still shown
            _error := SQLERRM;
        END;
    END IF;
    -- users so far: the SRM rows' counts per variant (else their total, else the metric rows'
    -- largest per variant)
    SELECT coalesce(sum(n) FILTER (WHERE section = 'srm' AND variant IS NOT NULL),
                    max(n) FILTER (WHERE section = 'srm'))
    INTO _users
    FROM json_to_recordset(coalesce(_report, '[]')) AS x(section text, variant text, n bigint);
    IF _users IS NULL THEN
        SELECT sum(m) INTO _users
        FROM (SELECT max(n) AS m FROM json_to_recordset(coalesce(_report, '[]')) AS x(section text, variant text, n bigint)
              WHERE section = 'metric' GROUP BY variant) AS y;
    END IF;
    -- the planned group-sequential boundaries (O'Brien–Fleming-type spending over the planned looks)
    SELECT json_agg(json_build_object('look', b.look, 'info_fraction', b.info_fraction, 'z_boundary', b.z_boundary,
                                      'nominal_p', b.nominal_p, 'alpha_spent', b.alpha_spent) ORDER BY b.look)
    INTO _looks
    FROM reco.stat_sequential_boundaries(_e.looks, _e.alpha) AS b
    WHERE _e.planned_users IS NOT NULL;  -- without planned users the decision is the always-valid test: no looks
    RETURN json_build_object(
        'experiment', json_build_object(
            'name', _e.name, 'scenario', _e.scenario, 'kind', _e.kind, 'status', _e.status, 'traffic', _e.traffic,
            'primary_metric', _e.primary_metric, 'secondary_metrics', _e.secondary_metrics,
            'guardrail_metrics', _e.guardrail_metrics, 'oec', _e.oec, 'looks', _e.looks,
            'planned_users', _e.planned_users, 'alpha', _e.alpha, 'pre_period', _e.pre_period::text,
            'description', _e.description, 'created_at', _e.created_at, 'started_at', _e.started_at,
            'stopped_at', _e.stopped_at,
            'variants', (SELECT json_agg(json_build_object('name', v.name, 'weight', v.weight, 'overrides', v.overrides)
                                         ORDER BY v.position)
                         FROM reco.experiment_variants v WHERE v.experiment_id = _e.experiment_id)),
        'users', _users,
        'info_fraction', CASE WHEN _e.planned_users > 0 THEN _users::float8 / _e.planned_users END,
        'boundaries', _looks,
        -- the observed z of the primary metric per treatment variant, from its two-sided p-value and
        -- the sign of its lift (what the sequential monitor compares with the boundary)
        'observed', (SELECT json_agg(json_build_object(
                                'variant', x.variant, 'p_value', x.p_value,
                                'z', sign(x.lift) * -reco.stat_norm_ppf(greatest(x.p_value, 1e-300) / 2)))
                     FROM json_to_recordset(coalesce(_report, '[]'))
                          AS x(section text, variant text, metric text, lift float8, p_value float8)
                     WHERE x.section = 'metric' AND x.metric = _e.primary_metric AND x.p_value IS NOT NULL
                       AND x.lift IS NOT NULL),
        'report', _report,
        'report_error', _error);
END $$;
COMMENT ON FUNCTION reco.console_experiment(text, text) IS
$c$the console's page of one experiment as JSON (NULL for an unknown name): the experiment and its variants; the
rows of reco.experiment_report in its order (SRM check, metrics with lifts and CIs, guardrails, OEC, interleaving,
sequential, decision), or report_error when it cannot be made; users so far and the information fraction
(users / planned_users); the planned O'Brien–Fleming-type boundaries per look (reco.stat_sequential_boundaries; none
without planned_users, where the decision is the always-valid test)
and the observed z of the primary metric per treatment variant. Example: SELECT reco.console_experiment('ab');$c$;
