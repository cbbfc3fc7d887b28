-- Churn, part 3: monitoring. Drift of the scores and of each feature between the active model's validation
-- (its metrics hold the decile edges and shares, jobs/churn.py) and the latest scoring day: PSI and KS over those
-- bins; the AUC of stored scores on labels that have matured since; the retrain trigger the churn_score job pulls
-- (a PSI or an AUC decay past its setting queues churn_train for `reco jobs loop`). The latest check is kept in
-- the active model's metrics -> 'monitor', which /metrics reads (reco.api_churn_health).

-- PSI and KS of the values p_values against the reference shares of the bins cut at p_edges
-- (width_bucket: the number of edges at or below a value, as numpy's searchsorted(side='right'))
CREATE OR REPLACE FUNCTION reco._churn_drift(p_edges float8[], p_expected float8[], p_values float8[])
RETURNS TABLE (psi float8, ks float8, n bigint)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH b AS (SELECT i - 1 AS bin, e AS expected FROM unnest(p_expected) WITH ORDINALITY AS x(e, i)),
    a AS (SELECT width_bucket(v, coalesce(p_edges, '{}')) AS bin, count(*) AS c
          FROM unnest(p_values) AS v GROUP BY 1),
    t AS (SELECT cardinality(p_values) AS total),
    j AS (SELECT b.bin, greatest(b.expected, 1e-4) AS e,
                 greatest(coalesce(a.c, 0)::float8 / nullif(t.total, 0), 1e-4) AS o,
                 b.expected AS e_raw, coalesce(a.c, 0)::float8 / nullif(t.total, 0) AS o_raw
          FROM b CROSS JOIN t LEFT JOIN a ON a.bin = b.bin)
    SELECT sum((j.o - j.e) * ln(j.o / j.e)),
           max(abs(c.co - c.ce)), (SELECT total FROM t)
    FROM j
    JOIN (SELECT bin, sum(o_raw) OVER (ORDER BY bin) AS co, sum(e_raw) OVER (ORDER BY bin) AS ce FROM j) AS c
      ON c.bin = j.bin
$$;
COMMENT ON FUNCTION reco._churn_drift(float8[], float8[], float8[]) IS
    'internal: population stability index and Kolmogorov-Smirnov distance (on the bins) of values against reference bin shares';

-- AUC of probabilities against labels (Mann-Whitney U, average ranks for ties)
CREATE OR REPLACE FUNCTION reco._churn_auc(p_probability float8[], p_churned boolean[])
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH r AS (SELECT y, rank() OVER (ORDER BY p) + (count(*) OVER (PARTITION BY p) - 1) / 2.0 AS rk
               FROM unnest(p_probability, p_churned) AS x(p, y))
    SELECT (sum(rk) FILTER (WHERE y) - count(*) FILTER (WHERE y) * (count(*) FILTER (WHERE y) + 1) / 2.0)
           / nullif(count(*) FILTER (WHERE y) * count(*) FILTER (WHERE NOT y), 0)
    FROM r
$$;
COMMENT ON FUNCTION reco._churn_auc(float8[], boolean[]) IS 'internal: ROC AUC of probabilities against labels';

CREATE OR REPLACE FUNCTION reco.churn_monitor(p_tenant text DEFAULT NULL, p_features boolean DEFAULT true)
RETURNS TABLE (check_name text, subject text, value float8, threshold float8, alert boolean, detail jsonb)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _m reco.models := reco._churn_active(_tid);
    _day date;
    _d record;
    _psi_max float8 := reco.setting('churn_psi_retrain', _tid)::float8;
    _auc_drop float8 := reco.setting('churn_auc_drop_retrain', _tid)::float8;
    _win int := reco.setting('churn_window_days', _tid)::int;
    _matured date;
    _auc float8;
    _n bigint;
    _names text[] := reco.churn_feature_names();
BEGIN
    IF _m.model_id IS NULL THEN
        RAISE EXCEPTION 'tenant "%" has no active churn model to monitor', coalesce(p_tenant, 'default')
            USING ERRCODE = 'no_data_found', HINT = 'Train one: `reco churn train`.';
    END IF;
    SELECT max(s.as_of) INTO _day FROM reco.churn_scores s WHERE s.tenant_id = _tid AND s.model_id = _m.model_id;
    IF _day IS NOT NULL AND _m.metrics ? 'score_edges' THEN
        SELECT * INTO _d FROM reco._churn_drift(
            ARRAY(SELECT jsonb_array_elements_text(_m.metrics -> 'score_edges')::float8),
            ARRAY(SELECT jsonb_array_elements_text(_m.metrics -> 'score_shares')::float8),
            ARRAY(SELECT s.probability FROM reco.churn_scores s
                  WHERE s.tenant_id = _tid AND s.as_of = _day AND s.model_id = _m.model_id));
        check_name := 'score_psi'; subject := 'probability'; value := _d.psi; threshold := _psi_max;
        alert := _d.psi > _psi_max; detail := jsonb_build_object('as_of', _day, 'users', _d.n, 'ks', _d.ks);
        RETURN NEXT;
        check_name := 'score_ks'; value := _d.ks; threshold := NULL; alert := false;
        RETURN NEXT;
    END IF;
    -- the AUC of the newest stored scoring day whose labels have matured
    SELECT max(s.as_of) INTO _matured FROM reco.churn_scores s
    WHERE s.tenant_id = _tid AND s.as_of + _win <= reco._churn_data_end(_tid);
    IF _matured IS NOT NULL THEN
        SELECT reco._churn_auc(array_agg(s.probability), array_agg(l.churned)), count(*) INTO _auc, _n
        FROM reco.churn_scores s
        JOIN reco._churn_labels(_tid, ARRAY[_matured]) AS l ON l.as_of = s.as_of AND l.user_key = s.user_key
        WHERE s.tenant_id = _tid AND s.as_of = _matured;
        check_name := 'matured_auc'; subject := 'probability'; value := _auc;
        threshold := (_m.metrics ->> 'auc')::float8 - _auc_drop;
        alert := _auc < (_m.metrics ->> 'auc')::float8 - _auc_drop;
        detail := jsonb_build_object('as_of', _matured, 'users', _n, 'validation_auc', (_m.metrics ->> 'auc')::float8);
        RETURN NEXT;
    END IF;
    IF p_features AND _day IS NOT NULL AND _m.metrics ? 'feature_edges' THEN
        RETURN QUERY
        WITH x AS (SELECT m.x FROM reco._churn_matrix(_tid, ARRAY[_day]) AS m)
        SELECT 'feature_psi', f.name, d.psi, _psi_max, d.psi > _psi_max, jsonb_build_object('as_of', _day, 'ks', d.ks)
        FROM unnest(_names) WITH ORDINALITY AS f(name, i)
        CROSS JOIN LATERAL reco._churn_drift(
            ARRAY(SELECT jsonb_array_elements_text(_m.metrics -> 'feature_edges' -> f.name)::float8),
            ARRAY(SELECT jsonb_array_elements_text(_m.metrics -> 'feature_shares' -> f.name)::float8),
            ARRAY(SELECT x.x[f.i] FROM x)) AS d
        WHERE _m.metrics -> 'feature_shares' ? f.name;
    END IF;
END $$;
COMMENT ON FUNCTION reco.churn_monitor(text, boolean) IS
$c$the churn model's health: score_psi and score_ks (the latest scoring day's probabilities against the active
model's validation, on its decile bins), matured_auc (the AUC of the newest stored scoring day whose label window
has passed, alert when below the validation AUC minus churn_auc_drop_retrain) and, with p_features, feature_psi
per feature (alert above churn_psi_retrain). Example:
SELECT check_name, subject, round(value::numeric, 3), alert FROM reco.churn_monitor('default');  -- score_psi | probability | 0.012 | f$c$;

-- Run by the churn_score job after scoring: the score PSI and the matured AUC (not the per-feature PSI: that
-- recomputes the features); an alert queues churn_train for `reco jobs loop`. The result is kept in the active
-- model's metrics -> 'monitor' for /metrics. Returns a sentence when it queued a retrain, else NULL.
CREATE OR REPLACE FUNCTION reco._churn_retrain_check(p_tenant_id int)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    _slug text := (SELECT slug FROM reco.tenants WHERE tenant_id = p_tenant_id);
    _rows jsonb;
    _why text;
BEGIN
    SELECT coalesce(jsonb_object_agg(c.check_name, jsonb_build_object('value', c.value, 'alert', c.alert)
                                                   || c.detail), '{}'),
           string_agg(format('%s %s (limit %s)', c.check_name, round(c.value::numeric, 3),
                             round(c.threshold::numeric, 3)), ', ') FILTER (WHERE c.alert)
    INTO _rows, _why
    FROM reco.churn_monitor(_slug, false) AS c;
    UPDATE reco.models
    SET metrics = metrics || jsonb_build_object('monitor', _rows || jsonb_build_object('checked_at', now(),
                                                                                      'retrain_due', _why IS NOT NULL))
    WHERE tenant_id = p_tenant_id AND purpose = 'churn' AND active;
    IF _why IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO reco.job_queue (tenant_id, job, reason)
    VALUES (p_tenant_id, 'churn_train', 'churn monitoring: ' || _why)
    ON CONFLICT ON CONSTRAINT job_queue_pkey DO UPDATE SET reason = excluded.reason;
    RETURN 'retrain queued: ' || _why;
END $$;
COMMENT ON FUNCTION reco._churn_retrain_check(int) IS
    'internal: after scoring, the churn drift and matured-AUC checks; an alert queues churn_train for `reco jobs loop`';

-- /metrics: per tenant with an active churn model, the latest monitoring (credential-less, like api_job_health)
CREATE OR REPLACE FUNCTION reco.api_churn_health()
RETURNS TABLE (tenant text, version int, validation_auc float8, score_psi float8, matured_auc float8,
               retrain_due boolean, scored_as_of float8)
LANGUAGE sql STABLE AS $$
    SELECT t.slug, m.version, (m.metrics ->> 'auc')::float8, (m.metrics -> 'monitor' -> 'score_psi' ->> 'value')::float8,
           (m.metrics -> 'monitor' -> 'matured_auc' ->> 'value')::float8,
           coalesce((m.metrics -> 'monitor' ->> 'retrain_due')::boolean, false),
           extract(epoch FROM (SELECT max(s.as_of) FROM reco.churn_scores s WHERE s.tenant_id = m.tenant_id)::timestamp
                              AT TIME ZONE 'UTC')::float8
    FROM reco.models m JOIN reco.tenants t USING (tenant_id)
    WHERE m.purpose = 'churn' AND m.active AND t.evaluation_of IS NULL
    ORDER BY 1
$$;
COMMENT ON FUNCTION reco.api_churn_health() IS
$c$per tenant with an active churn model: its version, validation AUC, the latest monitoring's score PSI and matured
AUC, whether a retrain is due, the latest scoring day (epoch seconds) (/metrics)$c$;
