-- Experiments: outcomes per user, their sufficient statistics, and the report. How experiments are created
-- and users assigned is in sql/048_experiment_assignment.sql.
--
-- Everything is read from the rows serving and ingest already write: reco.exposures (which
-- experiment and variant showed what to whom, and which shown features were used within
-- bandit_window), reco.events and reco.interactions. Per user in an experiment, from the first
-- exposure on (until the experiment stopped), each metric is a value and, for ratio metrics, a
-- denominator; the same metric over the pre_period before the first exposure is the CUPED
-- covariate. The report's statistics are the reco.stat_* functions (sql/073–078_stats_*.sql) over the
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

-- (p_until added: the old two-argument signatures go; callers passing two arguments are unchanged)
DROP FUNCTION IF EXISTS reco.experiment_stats(text, text);
DROP FUNCTION IF EXISTS reco.experiment_user_metrics(text, text);
CREATE OR REPLACE FUNCTION reco.experiment_user_metrics(p_name text, p_tenant text DEFAULT NULL,
                                                        p_until timestamptz DEFAULT NULL)
RETURNS TABLE (variant text, user_key int, first_exposure timestamptz, metric text, value float8,
               denominator float8, pre_value float8)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _e reco.experiments := reco._experiment(p_name, p_tenant);
    _end timestamptz := least(coalesce(_e.stopped_at, now()), coalesce(p_until, 'infinity'));
BEGIN
    RETURN QUERY
    -- per user, index probes of their own rows (events by user and time, interactions by user):
    -- linear in the users, whatever the planner estimates for the exposures
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
    ), base AS MATERIALIZED (
        SELECT eu.*, ev.uses, ev.uses_pre, ev.successes, ev.outcomes, ad.adopted, ad.adopted_pre
        FROM eu
        CROSS JOIN LATERAL (
            SELECT count(*) FILTER (WHERE e.kind = 'use' AND e.occurred_at >= eu.t0)::float8 AS uses,
                   count(*) FILTER (WHERE e.kind = 'use' AND e.occurred_at < eu.t0)::float8 AS uses_pre,
                   count(*) FILTER (WHERE e.success AND e.occurred_at >= eu.t0)::float8 AS successes,
                   count(*) FILTER (WHERE e.success IS NOT NULL AND e.occurred_at >= eu.t0)::float8 AS outcomes
            FROM reco.events e
            WHERE e.tenant_id = _e.tenant_id AND e.user_key = eu.uk
              AND e.occurred_at >= eu.t0 - _e.pre_period AND e.occurred_at < _end) AS ev
        CROSS JOIN LATERAL (
            SELECT coalesce(bool_or(i.first_at >= eu.t0 AND i.first_at < _end), false)::int::float8 AS adopted,
                   coalesce(bool_or(i.first_at >= eu.t0 - _e.pre_period AND i.first_at < eu.t0), false)::int::float8
                       AS adopted_pre
            FROM reco.interactions i
            WHERE i.tenant_id = _e.tenant_id AND i.user_key = eu.uk) AS ad
    )
    SELECT b.variant, b.uk, b.t0, v.metric, v.value, v.denominator, v.pre_value
    FROM base b
    CROSS JOIN LATERAL (VALUES
        ('exposures', b.exposures, 1::float8, NULL::float8),
        ('clicks', b.clicks, 1, NULL),
        ('clicked', (b.clicks > 0)::int::float8, 1, NULL),
        ('click_rate', b.clicks, b.exposures, NULL),
        ('uses', b.uses, 1, b.uses_pre),
        ('adoption', b.adopted, 1, b.adopted_pre),
        ('success_rate', b.successes, b.outcomes, NULL)
    ) AS v(metric, value, denominator, pre_value)
    UNION ALL
    -- the tenant's metrics: per user, the events of the metric's kind after and before
    SELECT b.variant, b.uk, b.t0, m.name,
           CASE m.agg WHEN 'any' THEN (c.n_post > 0)::int::float8 WHEN 'count' THEN c.n_post ELSE c.s_post END,
           CASE m.agg WHEN 'mean' THEN c.n_post ELSE 1 END,
           CASE m.agg WHEN 'any' THEN (c.n_pre > 0)::int::float8 WHEN 'count' THEN c.n_pre WHEN 'sum' THEN c.s_pre END
    FROM base b
    CROSS JOIN reco.metrics m
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE e.occurred_at >= b.t0)::float8 AS n_post,
               count(*) FILTER (WHERE e.occurred_at < b.t0)::float8 AS n_pre,
               coalesce(sum(p.v) FILTER (WHERE e.occurred_at >= b.t0), 0) AS s_post,
               coalesce(sum(p.v) FILTER (WHERE e.occurred_at < b.t0), 0) AS s_pre
        FROM reco.events e
        CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(e.props -> m.prop) = 'number'
                                        THEN (e.props ->> m.prop)::float8 END AS v) AS p
        WHERE e.tenant_id = _e.tenant_id AND e.user_key = b.uk AND e.kind = m.event_kind
          AND e.occurred_at >= b.t0 - _e.pre_period AND e.occurred_at < _end) AS c
    WHERE m.tenant_id = _e.tenant_id;
END $$;
COMMENT ON FUNCTION reco.experiment_user_metrics(text, text, timestamptz) IS
$c$per user in an experiment and metric: the variant, the first exposure, the value from then on (until the experiment
stopped, or until p_until: the data as it was then, e.g. at a planned look), the denominator of a ratio metric (1
otherwise) and the value over pre_period before the first exposure (the CUPED covariate; NULL where it has no
meaning, e.g. exposures). Example:
SELECT metric, variant, avg(value) FROM reco.experiment_user_metrics('usercf-boost') GROUP BY 1, 2;$c$;

CREATE OR REPLACE FUNCTION reco.experiment_stats(p_name text, p_tenant text DEFAULT NULL, p_until timestamptz DEFAULT NULL)
RETURNS TABLE (variant text, metric text, metric_type text, higher_is_better boolean, n bigint,
               sum_x float8, sum_x2 float8, sum_d float8, sum_d2 float8, sum_xd float8,
               n_pre bigint, sum_p float8, sum_p2 float8, sum_xp float8)
LANGUAGE sql STABLE AS $$
    SELECT u.variant, u.metric, t.metric_type, t.higher_is_better, count(*),
           sum(u.value), sum(u.value * u.value), sum(u.denominator), sum(u.denominator * u.denominator),
           sum(u.value * u.denominator),
           count(u.pre_value), sum(u.pre_value), sum(u.pre_value * u.pre_value), sum(u.value * u.pre_value)
    FROM reco.experiment_user_metrics(p_name, p_tenant, p_until) AS u
    JOIN reco._metric_types((SELECT e.tenant_id FROM reco._experiment(p_name, p_tenant) AS e)) AS t
      ON t.metric = u.metric
    GROUP BY u.variant, u.metric, t.metric_type, t.higher_is_better
$$;
COMMENT ON FUNCTION reco.experiment_stats(text, text, timestamptz) IS
$c$the sufficient statistics of an experiment per variant and metric: n users, Σx, Σx² of the values, Σd, Σd², Σxd of a
ratio metric's denominators, and Σp, Σp², Σxp of the pre-period covariate (n_pre users have one); with p_until, as
they were then (users first exposed before it, events before it). Everything the report computes starts here.$c$;

-- The per-user covariances of metrics within each variant, for the OEC's variance: each metric's
-- linearised value (x − r·d) / mean(d), r = Σx / Σd (d = 1 for a non-ratio metric: x − mean), whose
-- variance / n is the variance of the arm's mean, ratio or not (the delta method).
CREATE OR REPLACE FUNCTION reco.experiment_covariances(p_name text, p_metrics text[], p_tenant text DEFAULT NULL)
RETURNS TABLE (variant text, metric_1 text, metric_2 text, n bigint, covariance float8)
LANGUAGE sql STABLE AS $$
    WITH u AS MATERIALIZED (
        SELECT m.variant, m.user_key, m.metric, m.value, m.denominator
        FROM reco.experiment_user_metrics(p_name, p_tenant) AS m
        WHERE m.metric = ANY (p_metrics)
    ), r AS (
        SELECT u.variant, u.metric, sum(u.value) / nullif(sum(u.denominator), 0) AS ratio, avg(u.denominator) AS mean_d
        FROM u GROUP BY u.variant, u.metric
    ), l AS (
        SELECT u.variant, u.user_key, u.metric, (u.value - r.ratio * u.denominator) / nullif(r.mean_d, 0) AS v
        FROM u JOIN r ON r.variant = u.variant AND r.metric = u.metric
    )
    SELECT a.variant, a.metric, b.metric, count(*), sum(a.v * b.v) / nullif(count(*) - 1, 0)
    FROM l a
    JOIN l b ON b.variant = a.variant AND b.user_key = a.user_key
    GROUP BY a.variant, a.metric, b.metric
$$;
COMMENT ON FUNCTION reco.experiment_covariances(text, text[], text) IS
$c$per variant and pair of the given metrics: users n and the per-user covariance of the metrics' linearised values
(x − r·d)/mean(d), r = Σx/Σd (x − mean for a non-ratio metric), so that Cov(mean₁, mean₂) = covariance / n. The
report's OEC adds these covariances to its variance (two metrics that move together are not two pieces of
evidence). Example: SELECT * FROM reco.experiment_covariances('usercf-boost', '{clicked,uses}');$c$;

-- ---------------------------------------------------------------------------------------
-- The report
-- ---------------------------------------------------------------------------------------

-- One comparison of a variant with the control on one metric, from the sufficient statistics:
-- the test that fits the metric's type, CUPED where a pre-period covariate exists, P(better)
-- (Beta-Bernoulli for proportions, the normal approximation of the lift otherwise) and z.
DROP FUNCTION IF EXISTS reco._compare(text, boolean, float8, bigint, float8, float8, float8, float8, float8, bigint,
    float8, float8, float8, bigint, float8, float8, float8, float8, float8, bigint, float8, float8, float8);
CREATE OR REPLACE FUNCTION reco._compare(p_type text, p_higher boolean, p_alpha float8,
    a_n bigint, a_x float8, a_x2 float8, a_d float8, a_d2 float8, a_xd float8, a_np bigint, a_p float8, a_p2 float8, a_xp float8,
    b_n bigint, b_x float8, b_x2 float8, b_d float8, b_d2 float8, b_xd float8, b_np bigint, b_p float8, b_p2 float8, b_xp float8,
    OUT mean_a float8, OUT mean_b float8, OUT lift float8, OUT lift_low float8, OUT lift_high float8,
    OUT rel_lift float8, OUT rel_low float8, OUT rel_high float8, OUT p_value float8, OUT z float8,
    OUT p_better float8, OUT cuped_lift float8, OUT cuped_low float8, OUT cuped_high float8, OUT cuped_p float8,
    OUT variance_reduction float8, OUT bayes text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _t record;
    _c record;
    _ra record;
    _rb record;
BEGIN
    IF a_n < 2 OR b_n < 2 THEN
        mean_a := a_x / nullif(CASE WHEN p_type = 'ratio' THEN a_d ELSE a_n END, 0);
        mean_b := b_x / nullif(CASE WHEN p_type = 'ratio' THEN b_d ELSE b_n END, 0);
        RETURN;
    END IF;
    IF p_type = 'proportion' THEN
        SELECT * INTO _t FROM reco.stat_proportion_test(a_n, a_x::bigint, b_n, b_x::bigint, p_alpha);
        mean_a := _t.rate_a; mean_b := _t.rate_b; z := _t.z;
        lift := _t.lift; rel_lift := _t.rel_lift; p_value := _t.p_value;
        -- intervals that stay in range with few conversions (Newcombe; the ratio on the log scale)
        SELECT i.lift_low, i.lift_high, i.rel_low, i.rel_high INTO lift_low, lift_high, rel_low, rel_high
        FROM reco.stat_proportion_intervals(a_n, a_x::bigint, b_n, b_x::bigint, p_alpha) AS i;
        SELECT CASE WHEN p_higher THEN b.p_b_better ELSE 1 - b.p_b_better END,
               format('Bayesian (Beta(1, 1) prior, %s): P(better) %s %%, expected loss of shipping %s, of keeping the control %s; %s %% credible lift [%s %%, %s %%] (%s)',
                      b.method, round((100 * CASE WHEN p_higher THEN b.p_b_better ELSE 1 - b.p_b_better END)::numeric, 1),
                      round(CASE WHEN p_higher THEN b.loss_b ELSE b.loss_a END::numeric, 5),
                      round(CASE WHEN p_higher THEN b.loss_a ELSE b.loss_b END::numeric, 5), round((100 * (1 - p_alpha))::numeric),
                      round((100 * c.rel_low)::numeric, 1), round((100 * c.rel_high)::numeric, 1), c.method)
        INTO p_better, bayes
        FROM reco.stat_bayes_proportion(a_n, a_x::bigint, b_n, b_x::bigint, p_alpha) AS b
        CROSS JOIN reco.stat_beta_ratio_interval(1 + a_x, 1 + a_n - a_x, 1 + b_x, 1 + b_n - b_x, p_alpha) AS c;
    ELSIF p_type = 'ratio' THEN
        SELECT * INTO _ra FROM reco.stat_ratio_moments(a_n, a_x, a_x2, a_d, a_d2, a_xd);
        SELECT * INTO _rb FROM reco.stat_ratio_moments(b_n, b_x, b_x2, b_d, b_d2, b_xd);
        SELECT * INTO _t FROM reco.stat_mean_test_moments(a_n, _ra.mean, _ra.variance, b_n, _rb.mean, _rb.variance, p_alpha);
    ELSE
        SELECT * INTO _t FROM reco.stat_mean_test(a_n, a_x, a_x2, b_n, b_x, b_x2, p_alpha);
    END IF;
    IF p_type <> 'proportion' THEN
        mean_a := _t.mean_a; mean_b := _t.mean_b; z := _t.t;
        lift := _t.lift; lift_low := _t.lift_ci_low; lift_high := _t.lift_ci_high;
        rel_lift := _t.rel_lift; rel_low := _t.rel_ci_low; rel_high := _t.rel_ci_high; p_value := _t.p_value;
        p_better := CASE WHEN _t.se > 0 THEN reco.stat_norm_cdf(CASE WHEN p_higher THEN 1 ELSE -1 END * _t.lift / _t.se) END;
    END IF;
    -- CUPED: the same metric before the first exposure, for users who all have one
    IF p_type <> 'ratio' AND a_np = a_n AND b_np = b_n
       AND (a_p2 + b_p2) - (a_p + b_p) ^ 2 / (a_n + b_n) > 0 THEN
        SELECT * INTO _c FROM reco.stat_cuped_test(a_n, a_x, a_x2, a_p, a_p2, a_xp, b_n, b_x, b_x2, b_p, b_p2, b_xp, p_alpha);
        cuped_lift := _c.rel_lift; cuped_low := _c.rel_ci_low; cuped_high := _c.rel_ci_high; cuped_p := _c.p_value;
        variance_reduction := _c.variance_reduction;
    END IF;
END $$;

-- the always-valid test's tuning: the users (both arms) at which its confidence sequence is tightest
CREATE OR REPLACE FUNCTION reco.msprt_tuning()
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 5000::float8 $$;
COMMENT ON FUNCTION reco.msprt_tuning() IS
    'the users (both arms) at which the report''s always-valid test (reco.stat_msprt) is tightest: 5000, gbstats'' default';

-- a p value for people: 4 decimals, scientific below 0.0001 (never "0.0000000")
CREATE OR REPLACE FUNCTION reco._format_p(p_p float8)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN p_p >= 1e-4 OR p_p = 0 THEN to_char(p_p, 'FM0.0000') ELSE trim(to_char(p_p, '9.9EEEE')) END
$$;
COMMENT ON FUNCTION reco._format_p(float8) IS 'internal: a p value as text, 4 decimals or scientific below 1e-4';

-- the decision's statistics per treatment (elements with p, z, boundary): p_adj by Holm over the treatments, and
-- crossed: |z| ≥ boundary, or with an adjustment, the adjusted p against α (always-valid p) or the z of the
-- adjusted p against the boundary (a planned look's nominal p)
CREATE OR REPLACE FUNCTION reco._seq_holm(p_seq jsonb, p_alpha float8, p_always_valid boolean)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    _adj float8[] := reco.stat_p_adjust(ARRAY(SELECT (s ->> 'p')::float8 FROM jsonb_array_elements(p_seq) WITH ORDINALITY AS j(s, i) ORDER BY i), 'holm');
BEGIN
    RETURN (SELECT coalesce(jsonb_agg(s || jsonb_build_object('p_adj', _adj[i], 'crossed', coalesce(
                CASE WHEN _adj[i] > (s ->> 'p')::float8
                     THEN CASE WHEN p_always_valid THEN _adj[i] <= p_alpha
                               ELSE reco.stat_norm_ppf(1 - least(_adj[i], 1 - 1e-12) / 2) >= (s ->> 'boundary')::float8 END
                     ELSE abs((s ->> 'z')::float8) >= (s ->> 'boundary')::float8 END, false)) ORDER BY i), '[]')
            FROM jsonb_array_elements(p_seq) WITH ORDINALITY AS j(s, i));
END $$;
COMMENT ON FUNCTION reco._seq_holm(jsonb, float8, boolean) IS
    'internal: Holm over the treatments of the decision''s statistics, and whether each crossed its boundary';

CREATE OR REPLACE FUNCTION reco.experiment_report(p_name text, p_tenant text DEFAULT NULL)
RETURNS TABLE (section text, variant text, metric text, n bigint, mean float8, lift float8, lift_low float8,
               lift_high float8, rel_lift float8, rel_low float8, rel_high float8, p_value float8, p_adjusted float8,
               p_better float8, cuped_lift float8, cuped_low float8, cuped_high float8, cuped_p float8,
               variance_reduction float8, boundary float8, decision text, note text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _e reco.experiments := reco._experiment(p_name, p_tenant);
    _stats jsonb;
    _rows jsonb := '[]';
    _control text;
    _metrics text[];
    _srm record;
    _users bigint;
    _look int := 0;
    _fraction float8;
    -- the O'Brien-Fleming boundary of each planned look (a look's depends on the looks before it only)
    _bounds float8[] := ARRAY(SELECT b.z_boundary FROM reco.stat_sequential_boundaries(_e.looks, _e.alpha) AS b
                              ORDER BY b.look);
    _z_crit float8 := reco.stat_norm_ppf(1 - _e.alpha / 2);
    _adj float8[];
    _decision text := 'keep running';
    _reasons text[] := '{}';
    _r record;
    _v record;
    _oec float8;
    _oec_var float8;
    _il record;
    _share float8;
    _se float8;
    _p float8;
    _treatment text;
    _msprt record;
    _seq jsonb := '[]';
    _snap jsonb;
    _cov jsonb;
    _oecs jsonb := '[]';
    _reached int := 0;
    _until timestamptz;
    _higher boolean;
    _what text;
    _at text;
BEGIN
    SELECT v.name INTO _control FROM reco.experiment_variants v WHERE v.experiment_id = _e.experiment_id AND v.position = 0;
    IF _e.status = 'draft' THEN
        RETURN QUERY SELECT 'decision', NULL::text, NULL::text, NULL::bigint, NULL::float8, NULL::float8, NULL::float8,
            NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8,
            NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, 'keep running',
            'the experiment is a draft: start it with reco.start_experiment';
        RETURN;
    END IF;
    -- the tenant's settings changes while it ran (sql/012_settings_guard.sql): a change its arms read
    -- means two periods served differently
    RETURN QUERY SELECT 'settings', NULL::text, c.key, NULL::bigint, NULL::float8, NULL::float8, NULL::float8,
        NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8,
        NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::text,
        format('%s: %s %s → %s by %s%s%s', to_char(c.changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'), c.key,
               c.old_value, c.new_value, c.changed_by,
               CASE WHEN c.arms_read THEN '; the arms without their own override served the new value'
                    ELSE '; no arm reads it' END,
               CASE WHEN c.forced THEN format(' (forced: %s)', c.reason) ELSE '' END)
    FROM reco.experiment_settings_changes(p_name, p_tenant) AS c;

    IF _e.kind = 'interleave' THEN
        -- per user, the uses of shown features credited to each side; a user prefers the side
        -- with more; the share preferring the treatment against ½ (sign test, normal approximation)
        SELECT count(*) FILTER (WHERE w.b > w.a) AS b_wins, count(*) FILTER (WHERE w.a > w.b) AS a_wins,
               count(*) AS users, coalesce(sum(w.b - w.a), 0) AS delta
        INTO _il
        FROM (SELECT x.user_key, count(*) FILTER (WHERE x.sides[s.i] = 0) AS a, count(*) FILTER (WHERE x.sides[s.i] = 1) AS b
              FROM reco.exposures x
              CROSS JOIN LATERAL generate_subscripts(x.feature_keys, 1) AS s(i)
              WHERE x.experiment_id = _e.experiment_id AND x.tenant_id = _e.tenant_id
                AND x.feature_keys[s.i] = ANY (x.used_keys) AND x.user_key IS NOT NULL
              GROUP BY x.user_key) AS w;
        _users := _il.a_wins + _il.b_wins;
        _share := _il.b_wins::float8 / nullif(_users, 0);
        _se := sqrt(0.25 / nullif(_users, 0));
        _p := 2 * (1 - reco.stat_norm_cdf(abs(_share - 0.5) / _se));
        -- the decision: the always-valid test of the share (read at any time)
        SELECT * INTO _msprt FROM reco.stat_msprt((_share - 0.5) / _se, _users, _e.alpha, reco.msprt_tuning());
        SELECT v.name INTO _treatment FROM reco.experiment_variants v
        WHERE v.experiment_id = _e.experiment_id AND v.position = 1;
        RETURN QUERY
        SELECT 'interleave', _treatment, 'preference', _users, _share, _share - 0.5, _share - 0.5 - _z_crit * _se,
               _share - 0.5 + _z_crit * _se, NULL::float8, NULL::float8, NULL::float8, _p, NULL::float8,
               reco.stat_norm_cdf((_share - 0.5) / _se),
               NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::text,
               format('%s users preferred %s, %s preferred %s, %s used both sides equally; net uses %s',
                      _il.b_wins, _treatment, _il.a_wins, _control, _il.users - _users, _il.delta);
        _decision := CASE WHEN _users = 0 OR NOT _msprt.reject THEN 'keep running'
                          WHEN _il.b_wins > _il.a_wins THEN 'ship' ELSE 'stop (worse)' END;
        RETURN QUERY SELECT 'decision', NULL::text, NULL::text, NULL::bigint, NULL::float8, NULL::float8, NULL::float8,
            NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8,
            NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, _decision,
            CASE _decision WHEN 'ship' THEN 'users prefer the treatment''s items'
                           WHEN 'stop (worse)' THEN 'users prefer the control''s items'
                           ELSE 'no significant preference yet' END
            || format(' (always-valid sign test: p %s, alpha %s; the p in the interleave row is fixed-horizon, interim)',
                      reco._format_p(_msprt.p_value), _e.alpha);
        RETURN;
    END IF;

    _stats := (SELECT coalesce(jsonb_agg(to_jsonb(s)), '[]') FROM reco.experiment_stats(p_name, p_tenant) AS s);

    -- 1. sample ratio: users per variant against the weights
    SELECT * INTO _srm FROM reco.stat_srm(
        ARRAY(SELECT coalesce((SELECT (s ->> 'n')::bigint FROM jsonb_array_elements(_stats) s
                               WHERE s ->> 'metric' = 'exposures' AND s ->> 'variant' = v.name), 0)
              FROM reco.experiment_variants v WHERE v.experiment_id = _e.experiment_id ORDER BY v.position),
        ARRAY(SELECT v.weight FROM reco.experiment_variants v WHERE v.experiment_id = _e.experiment_id ORDER BY v.position));
    _users := (SELECT coalesce(sum((s ->> 'n')::bigint), 0) FROM jsonb_array_elements(_stats) s WHERE s ->> 'metric' = 'exposures');
    RETURN QUERY SELECT 'srm', NULL::text, NULL::text, _users, NULL::float8, NULL::float8, NULL::float8, NULL::float8,
        NULL::float8, NULL::float8, NULL::float8, _srm.p_value, NULL::float8, NULL::float8, NULL::float8, NULL::float8,
        NULL::float8, NULL::float8, NULL::float8, NULL::float8,
        CASE WHEN _srm.mismatch THEN 'invalid (SRM)' END,
        format('%s users: %s; expected %s; chi2 %s, p %s%s', _users,
               (SELECT string_agg(v.name || ' ' || coalesce((SELECT s ->> 'n' FROM jsonb_array_elements(_stats) s
                        WHERE s ->> 'metric' = 'exposures' AND s ->> 'variant' = v.name), '0'), ', ' ORDER BY v.position)
                FROM reco.experiment_variants v WHERE v.experiment_id = _e.experiment_id),
               (SELECT string_agg(round(100 * w.weight / w.total)::text || ' %', ' / ' ORDER BY w.position)
                FROM (SELECT v.weight, v.position, sum(v.weight) OVER () AS total
                      FROM reco.experiment_variants v WHERE v.experiment_id = _e.experiment_id) AS w),
               round(coalesce(_srm.chi2, 0)::numeric, 3), coalesce(reco._format_p(_srm.p_value), '-'),
               CASE WHEN _srm.mismatch THEN ': MISMATCH (p < 0.001) — the assignment or the logging is broken; do not read the lifts'
                    ELSE ': ok' END);

    -- 2. every metric, every treatment against the control
    _metrics := ARRAY(SELECT u.m FROM unnest(ARRAY[_e.primary_metric] || _e.secondary_metrics || _e.guardrail_metrics
                                             || ARRAY(SELECT jsonb_object_keys(_e.oec))) WITH ORDINALITY AS u(m, o)
                      GROUP BY u.m ORDER BY min(u.o));
    FOR _r IN
        SELECT m.m AS metric, m.o, v.name AS variant, v.position, t.metric_type, t.higher_is_better,
               a.*, b.n AS b_n, b.sum_x AS b_x, b.sum_x2 AS b_x2, b.sum_d AS b_d, b.sum_d2 AS b_d2, b.sum_xd AS b_xd,
               b.n_pre AS b_np, b.sum_p AS b_p, b.sum_p2 AS b_p2, b.sum_xp AS b_xp
        FROM unnest(_metrics) WITH ORDINALITY AS m(m, o)
        JOIN reco._metric_types(_e.tenant_id) AS t ON t.metric = m.m
        CROSS JOIN reco.experiment_variants v
        LEFT JOIN LATERAL jsonb_to_record((SELECT s FROM jsonb_array_elements(_stats) s
                                           WHERE s ->> 'metric' = m.m AND s ->> 'variant' = _control))
             AS a(n bigint, sum_x float8, sum_x2 float8, sum_d float8, sum_d2 float8, sum_xd float8,
                  n_pre bigint, sum_p float8, sum_p2 float8, sum_xp float8) ON true
        LEFT JOIN LATERAL jsonb_to_record((SELECT s FROM jsonb_array_elements(_stats) s
                                           WHERE s ->> 'metric' = m.m AND s ->> 'variant' = v.name))
             AS b(n bigint, sum_x float8, sum_x2 float8, sum_d float8, sum_d2 float8, sum_xd float8,
                  n_pre bigint, sum_p float8, sum_p2 float8, sum_xp float8) ON true
        WHERE v.experiment_id = _e.experiment_id
        ORDER BY m.o, v.position
    LOOP
        IF _r.position = 0 THEN
            _rows := _rows || jsonb_build_array(jsonb_build_object(
                'section', CASE WHEN _r.metric = ANY (_e.guardrail_metrics) AND _r.metric <> _e.primary_metric THEN 'guardrail' ELSE 'metric' END,
                'variant', _r.variant, 'metric', _r.metric, 'n', coalesce(_r.n, 0),
                'mean', _r.sum_x / nullif(CASE WHEN _r.metric_type = 'ratio' THEN _r.sum_d ELSE _r.n END, 0),
                'o', _r.o, 'position', 0));
            CONTINUE;
        END IF;
        SELECT * INTO _v FROM reco._compare(_r.metric_type, _r.higher_is_better, _e.alpha,
            coalesce(_r.n, 0), _r.sum_x, _r.sum_x2, _r.sum_d, _r.sum_d2, _r.sum_xd, _r.n_pre, _r.sum_p, _r.sum_p2, _r.sum_xp,
            coalesce(_r.b_n, 0), _r.b_x, _r.b_x2, _r.b_d, _r.b_d2, _r.b_xd, _r.b_np, _r.b_p, _r.b_p2, _r.b_xp);
        _rows := _rows || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
            'section', CASE WHEN _r.metric = ANY (_e.guardrail_metrics) AND _r.metric <> _e.primary_metric THEN 'guardrail' ELSE 'metric' END,
            'variant', _r.variant, 'metric', _r.metric, 'n', coalesce(_r.b_n, 0), 'mean', _v.mean_b,
            'lift', _v.lift, 'lift_low', _v.lift_low, 'lift_high', _v.lift_high, 'rel_lift', _v.rel_lift,
            'rel_low', _v.rel_low, 'rel_high', _v.rel_high, 'p_value', _v.p_value, 'z', _v.z, 'p_better', _v.p_better,
            'cuped_lift', _v.cuped_lift, 'cuped_low', _v.cuped_low, 'cuped_high', _v.cuped_high, 'cuped_p', _v.cuped_p,
            'variance_reduction', _v.variance_reduction, 'higher', _r.higher_is_better, 'o', _r.o, 'bayes', _v.bayes,
            'position', _r.position)));
    END LOOP;

    -- 3. multiple comparisons: the primary metric's p over the treatments by Holm (the decision's
    -- family-wise error), the secondary metrics' over treatments × metrics by Benjamini-Hochberg
    -- (their false discovery rate); guardrails unadjusted (a guardrail should be quick to fire)
    FOR _r IN SELECT f.family, f.method FROM (VALUES ('primary', 'holm'), ('secondary', 'bh')) AS f(family, method) LOOP
        _adj := reco.stat_p_adjust(ARRAY(
            SELECT (x ->> 'p_value')::float8 FROM jsonb_array_elements(_rows) WITH ORDINALITY AS j(x, i)
            WHERE x ->> 'section' = 'metric' AND (x ->> 'position')::int > 0
              AND (x ->> 'metric' = _e.primary_metric) = (_r.family = 'primary') ORDER BY i), _r.method);
        _rows := (SELECT jsonb_agg(CASE WHEN k.k IS NULL THEN x
                                        ELSE x || jsonb_strip_nulls(jsonb_build_object('p_adjusted', _adj[k.k])) END ORDER BY j.i)
                  FROM jsonb_array_elements(_rows) WITH ORDINALITY AS j(x, i)
                  LEFT JOIN (SELECT i2, row_number() OVER (ORDER BY i2) AS k
                             FROM jsonb_array_elements(_rows) WITH ORDINALITY AS j2(x2, i2)
                             WHERE x2 ->> 'section' = 'metric' AND (x2 ->> 'position')::int > 0
                               AND (x2 ->> 'metric' = _e.primary_metric) = (_r.family = 'primary')) AS k ON k.i2 = j.i);
    END LOOP;

    -- 4. the decision's statistics for the primary metric, per treatment (_seq): without planned_users the
    -- always-valid test (mSPRT) on the data now; with them, the planned looks reached, each on the data as it
    -- was when its share of the planned users had arrived (so re-reading never re-tests a look)
    IF _e.planned_users IS NULL THEN
        _seq := (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'variant', t.x ->> 'variant', 'z', (t.x ->> 'z')::float8, 'lift', (t.x ->> 'lift')::float8,
                       'rel', (t.x ->> 'rel_lift')::float8, 'n', (t.x ->> 'n')::bigint + (c.x ->> 'n')::bigint,
                       'p', m.p_value, 'boundary', m.z_boundary) ORDER BY (t.x ->> 'position')::int), '[]')
            FROM jsonb_array_elements(_rows) AS t(x)
            JOIN jsonb_array_elements(_rows) AS c(x) ON c.x ->> 'metric' = t.x ->> 'metric' AND c.x ->> 'variant' = _control
            CROSS JOIN LATERAL reco.stat_msprt((t.x ->> 'z')::float8, (t.x ->> 'n')::bigint + (c.x ->> 'n')::bigint,
                                               _e.alpha, reco.msprt_tuning()) AS m
            WHERE t.x ->> 'metric' = _e.primary_metric AND t.x ->> 'section' = 'metric' AND (t.x ->> 'position')::int > 0);
        _seq := reco._seq_holm(_seq, _e.alpha, true);
    ELSE
        _fraction := least(1.0, _users::float8 / _e.planned_users);
        _reached := (SELECT count(*) FROM generate_series(1, _e.looks) AS k
                     WHERE _users >= ceil(k::numeric * _e.planned_users / _e.looks));
        _look := 0;
        FOR k IN 1 .. _reached LOOP
            _look := k;
            -- the moment the look's last user arrived
            SELECT f.t0 INTO _until
            FROM (SELECT min(x.shown_at) AS t0 FROM reco.exposures x
                  WHERE x.experiment_id = _e.experiment_id AND x.tenant_id = _e.tenant_id AND x.user_key IS NOT NULL
                    AND x.shown_at < coalesce(_e.stopped_at, now())
                  GROUP BY x.user_key) AS f
            ORDER BY f.t0 OFFSET ceil(k::numeric * _e.planned_users / _e.looks)::bigint - 1 LIMIT 1;
            _snap := (SELECT jsonb_agg(to_jsonb(st)) FROM reco.experiment_stats(p_name, p_tenant, _until + interval '1 microsecond') AS st
                      WHERE st.metric = _e.primary_metric);
            _seq := (
                SELECT coalesce(jsonb_agg(jsonb_build_object(
                           'variant', b.variant, 'z', c.z, 'lift', c.lift, 'rel', c.rel_lift, 'n', a.n + b.n,
                           'p', c.p_value, 'boundary', _bounds[k], 'look', k, 'until', _until) ORDER BY v.position), '[]')
                FROM (SELECT * FROM jsonb_to_recordset(_snap) AS y(variant text, metric text, metric_type text,
                          higher_is_better boolean, n bigint, sum_x float8, sum_x2 float8, sum_d float8, sum_d2 float8,
                          sum_xd float8, n_pre bigint, sum_p float8, sum_p2 float8, sum_xp float8)) AS a
                JOIN (SELECT * FROM jsonb_to_recordset(_snap) AS y(variant text, metric text, n bigint, sum_x float8,
                          sum_x2 float8, sum_d float8, sum_d2 float8, sum_xd float8, n_pre bigint, sum_p float8,
                          sum_p2 float8, sum_xp float8)) AS b
                  ON b.metric = a.metric AND b.variant <> a.variant
                JOIN reco.experiment_variants v ON v.experiment_id = _e.experiment_id AND v.name = b.variant
                CROSS JOIN LATERAL reco._compare(a.metric_type, a.higher_is_better, _e.alpha,
                    a.n, a.sum_x, a.sum_x2, a.sum_d, a.sum_d2, a.sum_xd, a.n_pre, a.sum_p, a.sum_p2, a.sum_xp,
                    b.n, b.sum_x, b.sum_x2, b.sum_d, b.sum_d2, b.sum_xd, b.n_pre, b.sum_p, b.sum_p2, b.sum_xp) AS c
                WHERE a.metric = _e.primary_metric AND a.variant = _control);
            _seq := reco._seq_holm(_seq, _e.alpha, false);
            EXIT WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(_seq) s WHERE (s ->> 'crossed')::boolean);
        END LOOP;
    END IF;

    -- 5. the overall evaluation criterion: Σ weight × relative lift (better direction positive); its variance
    -- Σ_m Σ_k w_m w_k Cov(rel_m, rel_k), the covariances of the metrics per user included (delta method)
    IF _e.oec <> '{}' THEN
        _cov := (SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]')
                 FROM reco.experiment_covariances(p_name, ARRAY(SELECT jsonb_object_keys(_e.oec)), p_tenant) AS c);
        FOR _r IN SELECT v.name FROM reco.experiment_variants v WHERE v.experiment_id = _e.experiment_id AND v.position > 0 ORDER BY v.position LOOP
            WITH w AS (
                SELECT k.key AS metric, k.value::float8 * CASE WHEN (t.x ->> 'higher')::boolean THEN 1 ELSE -1 END AS w,
                       (t.x ->> 'rel_lift')::float8 AS rel, (t.x ->> 'mean')::float8 AS mb, nullif((c.x ->> 'mean')::float8, 0) AS ma
                FROM jsonb_each_text(_e.oec) AS k
                JOIN jsonb_array_elements(_rows) AS t(x) ON t.x ->> 'metric' = k.key AND t.x ->> 'variant' = _r.name
                JOIN jsonb_array_elements(_rows) AS c(x) ON c.x ->> 'metric' = k.key AND c.x ->> 'variant' = _control
            ), cv AS (
                SELECT * FROM jsonb_to_recordset(_cov) AS y(variant text, metric_1 text, metric_2 text, n bigint, covariance float8)
            )
            SELECT (SELECT sum(w.w * w.rel) FROM w),
                   (SELECT sum(w1.w * w2.w * (cb.covariance / (cb.n * w1.ma * w2.ma)
                                              + w1.mb * w2.mb * ca.covariance / (ca.n * w1.ma ^ 2 * w2.ma ^ 2)))
                    FROM w AS w1 CROSS JOIN w AS w2
                    JOIN cv AS cb ON cb.variant = _r.name AND cb.metric_1 = w1.metric AND cb.metric_2 = w2.metric
                    JOIN cv AS ca ON ca.variant = _control AND ca.metric_1 = w1.metric AND ca.metric_2 = w2.metric)
            INTO _oec, _oec_var;
            _oecs := _oecs || jsonb_build_array(jsonb_build_object('variant', _r.name, 'oec', _oec, 'var', _oec_var));
        END LOOP;
    END IF;

    -- 6. the decision
    IF _srm.mismatch THEN
        _decision := 'invalid (SRM)';
        _reasons := ARRAY[format('sample ratio mismatch (p = %s < 0.001): fix the assignment or the logging, then restart',
                                 reco._format_p(_srm.p_value))];
    ELSE
        -- guardrails: the always-valid test on the data now (quick to fire, and valid however often it is read)
        FOR _r IN
            SELECT t.x ->> 'variant' AS variant, t.x ->> 'metric' AS metric, (t.x ->> 'higher')::boolean AS higher,
                   (t.x ->> 'lift')::float8 AS lift, m.reject, m.p_value
            FROM jsonb_array_elements(_rows) AS t(x)
            JOIN jsonb_array_elements(_rows) AS c(x) ON c.x ->> 'metric' = t.x ->> 'metric' AND c.x ->> 'variant' = _control
            CROSS JOIN LATERAL reco.stat_msprt((t.x ->> 'z')::float8, (t.x ->> 'n')::bigint + (c.x ->> 'n')::bigint,
                                               _e.alpha, reco.msprt_tuning()) AS m
            WHERE (t.x ->> 'position')::int > 0 AND t.x ->> 'section' = 'guardrail'
            ORDER BY (t.x ->> 'position')::int
        LOOP
            IF _r.reject AND (_r.lift > 0) <> _r.higher THEN
                _decision := 'stop (worse)';
                _reasons := _reasons || format('%s: guardrail %s is worse (always-valid p %s < %s)', _r.variant, _r.metric,
                                               reco._format_p(_r.p_value), _e.alpha);
            END IF;
        END LOOP;
        FOR _r IN
            SELECT s ->> 'variant' AS variant, (s ->> 'z')::float8 AS z, (s ->> 'lift')::float8 AS lift,
                   (s ->> 'rel')::float8 AS rel, (s ->> 'p')::float8 AS p, (s ->> 'p_adj')::float8 AS p_adj,
                   (s ->> 'boundary')::float8 AS boundary, (s ->> 'crossed')::boolean AS crossed,
                   (s ->> 'look')::int AS look
            FROM jsonb_array_elements(_seq) AS s
        LOOP
            _higher := (SELECT t.higher_is_better FROM reco._metric_types(_e.tenant_id) t WHERE t.metric = _e.primary_metric);
            _what := format('%s %s by %s', _e.primary_metric, CASE WHEN (_r.lift > 0) = _higher THEN 'better' ELSE 'worse' END,
                            coalesce(to_char(100 * _r.rel, 'FMS990.0') || ' %', round(_r.lift::numeric, 4)::text));
            _at := CASE WHEN _r.look IS NULL THEN format('always-valid p %s, |z| %s vs %s', reco._format_p(_r.p_adj),
                                                         round(abs(coalesce(_r.z, 0))::numeric, 2), round(_r.boundary::numeric, 2))
                        ELSE format('|z| %s vs boundary %s at look %s of %s', round(abs(coalesce(_r.z, 0))::numeric, 2),
                                    round(_r.boundary::numeric, 2), _r.look, _e.looks) END;
            IF _r.crossed THEN
                IF (_r.lift > 0) = _higher THEN
                    IF _decision = 'keep running' THEN
                        _decision := 'ship';
                    END IF;
                    _reasons := _reasons || format('%s: %s (%s)', _r.variant, _what, _at);
                ELSE
                    _decision := 'stop (worse)';
                    _reasons := _reasons || format('%s: %s (%s)', _r.variant, _what, _at);
                END IF;
            ELSIF _reached = _e.looks THEN
                IF _decision = 'keep running' THEN
                    _decision := 'stop (no difference)';
                END IF;
                _reasons := _reasons || format('%s: no significant difference in %s at the planned %s users (%s)',
                                               _r.variant, _e.primary_metric, _e.planned_users, _at);
            ELSE
                _reasons := _reasons || format('%s: %s not significant yet (%s)', _r.variant, _e.primary_metric, _at);
            END IF;
        END LOOP;
        IF _e.planned_users IS NOT NULL AND _reached < _e.looks THEN
            _reasons := _reasons || format('next look: %s of %s at %s users (now %s)', _reached + 1, _e.looks,
                                           ceil((_reached + 1)::numeric * _e.planned_users / _e.looks), _users);
        END IF;
        -- the OEC must not be worse for a variant to ship
        IF _decision = 'ship' AND EXISTS (SELECT 1 FROM jsonb_array_elements(_oecs) o WHERE (o ->> 'oec')::float8 < 0) THEN
            _decision := 'keep running';
            _reasons := _reasons || 'the overall evaluation criterion is negative: the primary metric''s win costs more elsewhere'::text;
        END IF;
    END IF;

    RETURN QUERY
    SELECT x ->> 'section', x ->> 'variant', x ->> 'metric', (x ->> 'n')::bigint, (x ->> 'mean')::float8,
           (x ->> 'lift')::float8, (x ->> 'lift_low')::float8, (x ->> 'lift_high')::float8, (x ->> 'rel_lift')::float8,
           (x ->> 'rel_low')::float8, (x ->> 'rel_high')::float8, (x ->> 'p_value')::float8, (x ->> 'p_adjusted')::float8,
           (x ->> 'p_better')::float8, (x ->> 'cuped_lift')::float8, (x ->> 'cuped_low')::float8,
           (x ->> 'cuped_high')::float8, (x ->> 'cuped_p')::float8, (x ->> 'variance_reduction')::float8,
           (SELECT (s ->> 'boundary')::float8 FROM jsonb_array_elements(_seq) s
            WHERE x ->> 'metric' = _e.primary_metric AND x ->> 'section' = 'metric' AND s ->> 'variant' = x ->> 'variant'),
           NULL::text,
           concat_ws('; ',
               CASE WHEN _decision = 'keep running' AND (x ->> 'position')::int > 0 AND x ->> 'p_value' IS NOT NULL
                    THEN 'interim: fixed-horizon p and CI of the data so far, valid read once at the end; the decision uses the sequential test' END,
               CASE WHEN x ->> 'section' = 'guardrail' AND (x ->> 'position')::int > 0
                         AND CASE WHEN (x ->> 'higher')::boolean THEN (x ->> 'lift_high')::float8 < 0 ELSE (x ->> 'lift_low')::float8 > 0 END
                    THEN 'guardrail: the fixed-horizon CI is on the bad side' END,
               x ->> 'bayes')
    FROM jsonb_array_elements(_rows) WITH ORDINALITY AS j(x, i)
    ORDER BY (x ->> 'o')::int, (x ->> 'position')::int;

    RETURN QUERY
    SELECT 'oec', o ->> 'variant', 'oec', NULL::bigint, NULL::float8, (o ->> 'oec')::float8,
           (o ->> 'oec')::float8 - _z_crit * sqrt((o ->> 'var')::float8), (o ->> 'oec')::float8 + _z_crit * sqrt((o ->> 'var')::float8),
           NULL::float8, NULL::float8, NULL::float8,
           CASE WHEN (o ->> 'var')::float8 > 0 THEN 2 * reco.stat_norm_cdf(-abs((o ->> 'oec')::float8) / sqrt((o ->> 'var')::float8)) END,
           NULL::float8,
           CASE WHEN (o ->> 'var')::float8 > 0 THEN reco.stat_norm_cdf((o ->> 'oec')::float8 / sqrt((o ->> 'var')::float8)) END,
           NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::text,
           'weighted relative lifts (their covariances included): '
           || (SELECT string_agg(w.key || ' × ' || w.value, ' + ') FROM jsonb_each_text(_e.oec) w)
    FROM jsonb_array_elements(_oecs) AS o;

    -- the decision's statistics per treatment: always-valid p (or the look's nominal p) and its interval
    RETURN QUERY
    SELECT 'sequential', s ->> 'variant', _e.primary_metric, (s ->> 'n')::bigint, _fraction, (s ->> 'lift')::float8,
           (s ->> 'lift')::float8 - (s ->> 'boundary')::float8 * abs((s ->> 'lift')::float8 / nullif((s ->> 'z')::float8, 0)),
           (s ->> 'lift')::float8 + (s ->> 'boundary')::float8 * abs((s ->> 'lift')::float8 / nullif((s ->> 'z')::float8, 0)),
           NULL::float8, NULL::float8, NULL::float8, (s ->> 'p')::float8, (s ->> 'p_adj')::float8,
           NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, (s ->> 'boundary')::float8,
           NULL::text,
           CASE WHEN s ? 'look'
                THEN format('look %s of %s (the data at %s, when %s %% of the planned users had arrived): nominal p %s, |z| %s vs boundary %s',
                            s ->> 'look', _e.looks, to_char((s ->> 'until')::timestamptz, 'YYYY-MM-DD HH24:MI'),
                            round(100.0 * (s ->> 'look')::int / _e.looks), reco._format_p((s ->> 'p')::float8),
                            round(abs((s ->> 'z')::float8)::numeric, 2), round((s ->> 'boundary')::numeric, 2))
                ELSE format('always-valid (mSPRT) p %s over %s users, |z| %s vs boundary %s; lift_low/high: the %s %% confidence sequence',
                            reco._format_p((s ->> 'p')::float8), s ->> 'n', round(abs((s ->> 'z')::float8)::numeric, 2),
                            round((s ->> 'boundary')::numeric, 2), round((100 * (1 - _e.alpha))::numeric)) END
    FROM jsonb_array_elements(_seq) AS s;
    RETURN QUERY SELECT 'sequential', NULL::text, _e.primary_metric, _users, _fraction, NULL::float8, NULL::float8,
        NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8,
        NULL::float8, NULL::float8, NULL::float8, NULL::float8,
        CASE WHEN _e.planned_users IS NOT NULL AND _look > 0 THEN _bounds[_look] END, NULL::text,
        CASE WHEN _e.planned_users IS NULL
             THEN format('always-valid: no planned_users, so the decision is a mixture sequential test (mSPRT, tightest at %s users) that holds however often the report is read', reco.msprt_tuning())
             ELSE format('planned looks: %s reached of %s (%s of %s planned users, %s %%); each look is tested once, on the data of its moment; O''Brien-Fleming boundaries |z| ≥ %s',
                         _reached, _e.looks, _users, _e.planned_users, round(100 * _fraction),
                         (SELECT string_agg(round(b::numeric, 3)::text, ', ' ORDER BY o) FROM unnest(_bounds) WITH ORDINALITY AS u(b, o))) END;
    RETURN QUERY SELECT 'decision', NULL::text, NULL::text, NULL::bigint, NULL::float8, NULL::float8, NULL::float8,
        NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8,
        NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, _decision, array_to_string(_reasons, '; ');
END $$;
COMMENT ON FUNCTION reco.experiment_report(text, text) IS
$c$an experiment's report, one row per section: 'settings' first (each change of the tenant's settings while it
ran, reco.experiment_settings_changes, described in note), then 'srm' (users per variant against the weights, χ² p; a
mismatch at p < 0.001 invalidates the rest), then per metric (primary, secondary, guardrails) the control's row
and each treatment's: n users, mean, lift (absolute) and its CI (Newcombe for proportions), relative lift and CI
(log ratio for proportions), p, adjusted p (Holm over the treatments for the primary metric, Benjamini-Hochberg
over treatments × secondary metrics), P(better) (Beta-Bernoulli for proportions, normal otherwise), CUPED
relative lift, CI and p with the variance reduction (metrics with a pre-period), the decision's boundary
(primary), in note 'interim: …' while the decision keeps running (these are fixed-horizon values of the data so
far) and for proportions the Bayesian expected losses and credible interval; 'oec' per treatment when the
experiment has one (variance with the metrics' covariances); 'interleave' for interleaving experiments;
'sequential' per treatment (the decision's test: without planned_users the always-valid mSPRT on the data now,
p_value the always-valid p and lift_low/high the confidence sequence; with planned_users the last planned look
reached, tested once on the data of its moment) and a summary row; 'decision': ship / keep running /
stop (worse) / stop (no difference) / invalid (SRM), with its reasons in note. See docs/experiments-statistics.md.
Example: SELECT section, variant, metric, n, rel_lift, rel_low, rel_high, p_value, decision, note
         FROM reco.experiment_report('usercf-boost');$c$;
