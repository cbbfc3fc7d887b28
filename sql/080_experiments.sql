-- Experiments: outcomes per user, their sufficient statistics, and the report.
--
-- Everything is read from the rows serving and ingest already write: reco.exposures (which
-- experiment and variant showed what to whom, and which shown features were used within
-- bandit_window), reco.events and reco.interactions. Per user in an experiment, from the first
-- exposure on (until the experiment stopped), each metric is a value and, for ratio metrics, a
-- denominator; the same metric over the pre_period before the first exposure is the CUPED
-- covariate. The report's statistics are the reco.stat_* functions (sql/075_stats.sql) over the
-- sums of those values: n, Σx, Σx², Σd, Σd², Σxd, Σp, Σp², Σxp.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

-- ---------------------------------------------------------------------------------------
-- Tenant-defined metrics: declarative, never SQL text
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.create_metric(p_name text, p_event_kind text, p_agg text, p_prop text DEFAULT NULL,
                                              p_higher_is_better boolean DEFAULT true,
                                              p_description text DEFAULT '', p_tenant text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
BEGIN
    PERFORM reco._check_name(p_name, 'metric');
    IF p_name = ANY (reco.builtin_metrics()) THEN
        RAISE EXCEPTION 'metric "%" is built in', p_name
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pick another name.';
    END IF;
    IF reco._missing(p_event_kind) OR length(p_event_kind) > 100 THEN
        RAISE EXCEPTION 'event_kind is required (at most 100 characters)'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The kind of the events the metric counts, e.g. ''export''.';
    END IF;
    IF p_agg IS NULL OR p_agg NOT IN ('any', 'count', 'sum', 'mean') THEN
        RAISE EXCEPTION 'agg must be any, count, sum or mean, got %', coalesce(p_agg, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'any: did the user have such an event; count: how many; sum/mean: of a numeric props field.';
    END IF;
    IF (p_agg IN ('sum', 'mean')) <> (p_prop IS NOT NULL) OR length(p_prop) > 100 THEN
        RAISE EXCEPTION 'a % metric % a props field', p_agg, CASE WHEN p_agg IN ('sum', 'mean') THEN 'needs' ELSE 'takes no' END
            USING ERRCODE = 'invalid_parameter_value', HINT = 'sum and mean aggregate a numeric props field, e.g. p_prop => ''seconds''.';
    END IF;
    INSERT INTO reco.metrics (tenant_id, name, event_kind, prop, agg, higher_is_better, description)
    VALUES (_tid, p_name, p_event_kind, p_prop, p_agg, coalesce(p_higher_is_better, true), coalesce(p_description, ''))
    ON CONFLICT ON CONSTRAINT metrics_pkey DO UPDATE
        SET event_kind = excluded.event_kind, prop = excluded.prop, agg = excluded.agg,
            higher_is_better = excluded.higher_is_better, description = excluded.description;
END $$;
COMMENT ON FUNCTION reco.create_metric(text, text, text, text, boolean, text, text) IS
$c$define (or redefine) a metric over a user's events after the first exposure: the events of one kind,
aggregated as any (did it happen: a proportion), count, sum or mean (of a numeric props field; mean is a
ratio metric). Example: SELECT reco.create_metric('exports', 'export', 'count');$c$;

-- ---------------------------------------------------------------------------------------
-- Per user
-- ---------------------------------------------------------------------------------------

-- metric name -> (type, higher is better) for an experiment's tenant
CREATE OR REPLACE FUNCTION reco._metric_types(p_tenant_id int)
RETURNS TABLE (metric text, metric_type text, higher_is_better boolean)
LANGUAGE sql STABLE AS $$
    SELECT * FROM (VALUES ('clicked', 'proportion', true), ('click_rate', 'ratio', true), ('clicks', 'mean', true),
                          ('exposures', 'mean', true), ('adoption', 'proportion', true), ('uses', 'mean', true),
                          ('success_rate', 'ratio', true)) AS b(metric, metric_type, higher_is_better)
    UNION ALL
    SELECT m.name, CASE m.agg WHEN 'any' THEN 'proportion' WHEN 'mean' THEN 'ratio' ELSE 'mean' END, m.higher_is_better
    FROM reco.metrics m WHERE m.tenant_id = p_tenant_id
$$;

CREATE OR REPLACE FUNCTION reco.experiment_user_metrics(p_name text, p_tenant text DEFAULT NULL)
RETURNS TABLE (variant text, user_key int, first_exposure timestamptz, metric text, value float8,
               denominator float8, pre_value float8)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _e reco.experiments := reco._experiment(p_name, p_tenant);
    _end timestamptz := coalesce(_e.stopped_at, now());
    _from timestamptz;
BEGIN
    SELECT min(x.shown_at) - _e.pre_period INTO _from
    FROM reco.exposures x WHERE x.experiment_id = _e.experiment_id;
    RETURN QUERY
    WITH eu AS MATERIALIZED (
        -- interleaving exposures have no variant: their users are in both
        SELECT x.user_key AS uk, coalesce(min(x.variant), 'interleaved') AS variant, min(x.shown_at) AS t0,
               count(*)::float8 AS exposures,
               count(*) FILTER (WHERE cardinality(x.used_keys) > 0)::float8 AS clicks
        FROM reco.exposures x
        -- (ids shown things before they were users count once they are)
        WHERE x.experiment_id = _e.experiment_id AND x.tenant_id = _e.tenant_id AND x.shown_at < _end
          AND x.user_key IS NOT NULL
        GROUP BY x.user_key
    ), ev AS MATERIALIZED (
        SELECT eu.uk,
               count(*) FILTER (WHERE ev.kind = 'use' AND ev.occurred_at >= eu.t0)::float8 AS uses,
               count(*) FILTER (WHERE ev.kind = 'use' AND ev.occurred_at < eu.t0)::float8 AS uses_pre,
               count(*) FILTER (WHERE ev.success AND ev.occurred_at >= eu.t0)::float8 AS successes,
               count(*) FILTER (WHERE ev.success IS NOT NULL AND ev.occurred_at >= eu.t0)::float8 AS outcomes
        FROM eu
        JOIN reco.events ev ON ev.tenant_id = _e.tenant_id AND ev.user_key = eu.uk
                           AND ev.occurred_at >= eu.t0 - _e.pre_period AND ev.occurred_at < _end
        WHERE ev.occurred_at >= _from
        GROUP BY eu.uk
    ), ad AS MATERIALIZED (
        SELECT eu.uk,
               bool_or(i.first_at >= eu.t0 AND i.first_at < _end)::int::float8 AS adopted,
               bool_or(i.first_at >= eu.t0 - _e.pre_period AND i.first_at < eu.t0)::int::float8 AS adopted_pre
        FROM eu
        JOIN reco.interactions i ON i.tenant_id = _e.tenant_id AND i.user_key = eu.uk
        GROUP BY eu.uk
    ), cm AS MATERIALIZED (
        -- the tenant's metrics: per user, the events of the metric's kind after and before
        SELECT eu.uk, m.name,
               count(*) FILTER (WHERE ev.occurred_at >= eu.t0)::float8 AS n_post,
               count(*) FILTER (WHERE ev.occurred_at < eu.t0)::float8 AS n_pre,
               coalesce(sum(p.v) FILTER (WHERE ev.occurred_at >= eu.t0), 0) AS s_post,
               coalesce(sum(p.v) FILTER (WHERE ev.occurred_at < eu.t0), 0) AS s_pre
        FROM eu
        JOIN reco.events ev ON ev.tenant_id = _e.tenant_id AND ev.user_key = eu.uk
                           AND ev.occurred_at >= eu.t0 - _e.pre_period AND ev.occurred_at < _end
        JOIN reco.metrics m ON m.tenant_id = _e.tenant_id AND m.event_kind = ev.kind
        CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(ev.props -> m.prop) = 'number'
                                        THEN (ev.props ->> m.prop)::float8 END AS v) AS p
        WHERE ev.occurred_at >= _from
        GROUP BY eu.uk, m.name
    )
    SELECT eu.variant, eu.uk, eu.t0, b.metric, b.value, b.denominator, b.pre_value
    FROM eu
    LEFT JOIN ev ON ev.uk = eu.uk
    LEFT JOIN ad ON ad.uk = eu.uk
    CROSS JOIN LATERAL (VALUES
        ('exposures', eu.exposures, 1::float8, NULL::float8),
        ('clicks', eu.clicks, 1, NULL),
        ('clicked', (eu.clicks > 0)::int::float8, 1, NULL),
        ('click_rate', eu.clicks, eu.exposures, NULL),
        ('uses', coalesce(ev.uses, 0), 1, coalesce(ev.uses_pre, 0)),
        ('adoption', coalesce(ad.adopted, 0), 1, coalesce(ad.adopted_pre, 0)),
        ('success_rate', coalesce(ev.successes, 0), coalesce(ev.outcomes, 0), NULL)
    ) AS b(metric, value, denominator, pre_value)
    UNION ALL
    SELECT eu.variant, eu.uk, eu.t0, m.name,
           CASE m.agg WHEN 'any' THEN (coalesce(c.n_post, 0) > 0)::int::float8 WHEN 'count' THEN coalesce(c.n_post, 0)
                      ELSE coalesce(c.s_post, 0) END,
           CASE m.agg WHEN 'mean' THEN coalesce(c.n_post, 0) ELSE 1 END,
           CASE m.agg WHEN 'any' THEN (coalesce(c.n_pre, 0) > 0)::int::float8 WHEN 'count' THEN coalesce(c.n_pre, 0)
                      WHEN 'sum' THEN coalesce(c.s_pre, 0) END
    FROM eu
    CROSS JOIN reco.metrics m
    LEFT JOIN cm c ON c.uk = eu.uk AND c.name = m.name
    WHERE m.tenant_id = _e.tenant_id;
END $$;
COMMENT ON FUNCTION reco.experiment_user_metrics(text, text) IS
$c$per user in an experiment and metric: the variant, the first exposure, the value from then on (until the experiment
stopped), the denominator of a ratio metric (1 otherwise) and the value over pre_period before the first exposure
(the CUPED covariate; NULL where it has no meaning, e.g. exposures). Example:
SELECT metric, variant, avg(value) FROM reco.experiment_user_metrics('usercf-boost') GROUP BY 1, 2;$c$;

CREATE OR REPLACE FUNCTION reco.experiment_stats(p_name text, p_tenant text DEFAULT NULL)
RETURNS TABLE (variant text, metric text, metric_type text, higher_is_better boolean, n bigint,
               sum_x float8, sum_x2 float8, sum_d float8, sum_d2 float8, sum_xd float8,
               n_pre bigint, sum_p float8, sum_p2 float8, sum_xp float8)
LANGUAGE sql STABLE AS $$
    SELECT u.variant, u.metric, t.metric_type, t.higher_is_better, count(*),
           sum(u.value), sum(u.value * u.value), sum(u.denominator), sum(u.denominator * u.denominator),
           sum(u.value * u.denominator),
           count(u.pre_value), sum(u.pre_value), sum(u.pre_value * u.pre_value), sum(u.value * u.pre_value)
    FROM reco.experiment_user_metrics(p_name, p_tenant) AS u
    JOIN reco._metric_types((SELECT e.tenant_id FROM reco._experiment(p_name, p_tenant) AS e)) AS t
      ON t.metric = u.metric
    GROUP BY u.variant, u.metric, t.metric_type, t.higher_is_better
$$;
COMMENT ON FUNCTION reco.experiment_stats(text, text) IS
$c$the sufficient statistics of an experiment per variant and metric: n users, Σx, Σx² of the values, Σd, Σd², Σxd of a
ratio metric's denominators, and Σp, Σp², Σxp of the pre-period covariate (n_pre users have one). Everything the
report computes starts here.$c$;
