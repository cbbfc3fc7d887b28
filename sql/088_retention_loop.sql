-- Closing the loop: what the retention lists really won back.
--
-- Each list holds out a random slice (its experiment, sql/087_retention.sql). Once a list matures
-- (retention_window_days after it was drawn), every user on it is measured: retained = an event in
-- (contacted_at, matures_at]. Per action and churn tier, over all matured lists:
--
--   churn_held_out = held-out users who left / held-out users        (what happens without the action)
--   churn_treated  = treated users who left / treated users
--   win_back_rate  = 1 − churn_treated / churn_held_out               (the share of would-be churners won back:
--                    the quantity the list's E = p × r × V − cost assumes)
--
-- with the 95 % interval of the ratio (reco.stat_beta_ratio_interval over the two churn rates' Beta(1, 1)
-- posteriors: it keeps the skew of a churn rate near 1, where the log/Katz interval is far too narrow) and the
-- z-test's p value
-- (reco.stat_proportion_test). A rate is used instead of the assumed one by the next list when p <
-- retention_alpha and both arms have at least retention_min_held_out users. Qini / uplift@k over the matured
-- lists: reco.retention_uplift.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

CREATE OR REPLACE FUNCTION reco._measure_retention_lists(p_tenant_id int, p_now timestamptz)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    _lists int;
BEGIN
    WITH due AS (
        UPDATE reco.retention_lists l SET measured_at = p_now
        WHERE l.tenant_id = p_tenant_id AND l.measured_at IS NULL AND l.matures_at <= p_now
        RETURNING l.list_id, l.matures_at
    ), measured AS (
        UPDATE reco.retention_contacts c
        SET retained = EXISTS (SELECT 1 FROM reco.events e
                               WHERE e.tenant_id = p_tenant_id AND e.user_key = c.user_key
                                 AND e.occurred_at > c.contacted_at AND e.occurred_at <= d.matures_at)
        FROM due d WHERE c.list_id = d.list_id
        RETURNING 1
    )
    SELECT count(*) INTO _lists FROM due;
    RETURN _lists;
END $$;
COMMENT ON FUNCTION reco._measure_retention_lists(int, timestamptz) IS
    'internal: measure the tenant''s lists matured by p_now (retained: an event after the contact, before maturity)';

DROP FUNCTION IF EXISTS reco.measure_retention_lists(text);  -- now with p_at
CREATE OR REPLACE FUNCTION reco.measure_retention_lists(p_tenant text DEFAULT NULL, p_at timestamptz DEFAULT now())
RETURNS int
LANGUAGE sql AS $$
    SELECT reco._measure_retention_lists(reco._tenant_id(p_tenant), p_at)
$$;
COMMENT ON FUNCTION reco.measure_retention_lists(text, timestamptz) IS
$c$measure the retention lists that have matured (retention_window_days after they were drawn): for every user on
them, whether they came back (an event after the contact, before maturity); returns how many lists were measured
(matured by p_at, default now()).
reco.retention_list does it first, so a new list uses the latest measurements. Example:
SELECT reco.measure_retention_lists();  -- 1$c$;

CREATE OR REPLACE FUNCTION reco._retention_effects(p_tenant_id int, p_now timestamptz)
RETURNS TABLE (action text, tier text, lists bigint, treated bigint, treated_churned bigint, held_out bigint,
               held_out_churned bigint, churn_treated float8, churn_held_out float8, win_back_rate float8,
               ci_low float8, ci_high float8, p_value float8, significant boolean)
LANGUAGE sql STABLE AS $$
    WITH arms AS (
        SELECT c.action, c.tier, count(DISTINCT c.list_id) AS lists,
               count(*) FILTER (WHERE NOT c.held_out) AS treated,
               count(*) FILTER (WHERE NOT c.held_out AND NOT c.retained) AS treated_churned,
               count(*) FILTER (WHERE c.held_out) AS held_out,
               count(*) FILTER (WHERE c.held_out AND NOT c.retained) AS held_out_churned
        FROM reco.retention_contacts c
        JOIN reco.retention_lists l ON l.list_id = c.list_id
        WHERE c.tenant_id = p_tenant_id AND c.retained IS NOT NULL AND l.matures_at <= p_now
        GROUP BY c.action, c.tier
    )
    SELECT a.action, a.tier, a.lists, a.treated, a.treated_churned, a.held_out, a.held_out_churned,
           a.treated_churned::float8 / nullif(a.treated, 0), a.held_out_churned::float8 / nullif(a.held_out, 0),
           -t.rel_lift, CASE WHEN least(a.held_out, a.treated) > 0 THEN -i.rel_high END,
           CASE WHEN least(a.held_out, a.treated) > 0 THEN -i.rel_low END, t.p_value,
           coalesce(t.p_value < reco.setting('retention_alpha', p_tenant_id)::float8
                    AND least(a.held_out, a.treated) >= reco.setting('retention_min_held_out', p_tenant_id)::int
                    AND t.rel_lift IS NOT NULL, false)
    FROM arms a
    CROSS JOIN LATERAL reco.stat_proportion_test(a.held_out, a.held_out_churned, a.treated, a.treated_churned) AS t
    -- the interval of the churn ratio from the two Beta(1, 1) posteriors: it keeps the skew of a held-out churn
    -- rate near 1 (the log/Katz interval is far too narrow there: 45 of 46 held-out users leaving is no certainty)
    CROSS JOIN LATERAL reco.stat_beta_ratio_interval(1 + a.held_out_churned, 1 + a.held_out - a.held_out_churned,
                                                     1 + a.treated_churned, 1 + a.treated - a.treated_churned) AS i
$$;
COMMENT ON FUNCTION reco._retention_effects(int, timestamptz) IS
    'internal: the measured win-back rate per action and tier over the lists matured by p_now';

-- per action: cost, the assumed rate, and per tier the rate a list uses now (measured when significant)
CREATE OR REPLACE FUNCTION reco._retention_rates(p_tenant_id int, p_actions jsonb, p_now timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_object_agg(a.key, jsonb_build_object(
        'cost', (a.value ->> 'cost')::numeric,
        'assumed_rate', (a.value ->> 'win_back_rate')::float8,
        'tiers', (SELECT jsonb_object_agg(t.tier, CASE
                     WHEN e.significant THEN jsonb_build_object(
                         'rate', least(greatest(e.win_back_rate, 0), 1), 'source', 'measured',
                         'ci_low', e.ci_low, 'ci_high', e.ci_high, 'p_value', e.p_value,
                         'treated', e.treated, 'held_out', e.held_out)
                     ELSE jsonb_build_object('rate', (a.value ->> 'win_back_rate')::float8, 'source', 'assumed') END)
                  FROM unnest(ARRAY['high', 'medium', 'low']) AS t(tier)
                  LEFT JOIN reco._retention_effects(p_tenant_id, p_now) AS e ON e.action = a.key AND e.tier = t.tier))),
        '{}')
    FROM jsonb_each(p_actions) AS a
$$;
COMMENT ON FUNCTION reco._retention_rates(int, jsonb, timestamptz) IS
    'internal: per action its cost, assumed rate and per tier the rate a list uses (measured once significant, else assumed)';

DROP FUNCTION IF EXISTS reco.retention_effects(text);  -- now with p_at
CREATE OR REPLACE FUNCTION reco.retention_effects(p_tenant text DEFAULT NULL, p_at timestamptz DEFAULT now())
RETURNS TABLE (action text, tier text, lists bigint, treated bigint, treated_churned bigint, held_out bigint,
               held_out_churned bigint, churn_treated float8, churn_held_out float8, win_back_rate float8,
               ci_low float8, ci_high float8, p_value float8, significant boolean, assumed_rate float8,
               rate_in_use float8, source text)
LANGUAGE sql STABLE AS $$
    WITH r AS (
        SELECT reco._retention_rates(reco._tenant_id(p_tenant), reco._retention_actions(reco._tenant_id(p_tenant)),
                                     p_at) AS rates
    )
    SELECT coalesce(e.action, a.key), coalesce(e.tier, t.key), coalesce(e.lists, 0), coalesce(e.treated, 0),
           coalesce(e.treated_churned, 0), coalesce(e.held_out, 0), coalesce(e.held_out_churned, 0),
           e.churn_treated, e.churn_held_out, e.win_back_rate, e.ci_low, e.ci_high, e.p_value,
           coalesce(e.significant, false), (a.value ->> 'assumed_rate')::float8,
           (t.value ->> 'rate')::float8, t.value ->> 'source'
    FROM r
    CROSS JOIN jsonb_each(r.rates) AS a
    CROSS JOIN jsonb_each(a.value -> 'tiers') AS t
    FULL JOIN reco._retention_effects(reco._tenant_id(p_tenant), p_at) AS e ON e.action = a.key AND e.tier = t.key
    ORDER BY 1, array_position(ARRAY['high', 'medium', 'low'], coalesce(e.tier, t.key))
$$;
COMMENT ON FUNCTION reco.retention_effects(text, timestamptz) IS
$c$each retention action's real win-back rate per churn tier, measured on the matured lists: treated and held-out
users and how many of each left, win_back_rate = 1 − churn_treated / churn_held_out with its 95 % interval
(the ratio of the churn rates' Beta(1, 1) posteriors, reco.stat_beta_ratio_interval) and the z-test's p value, whether it is significant (p < retention_alpha, both arms ≥
retention_min_held_out users), the assumed rate, and the rate the next list uses (measured when significant).
Actions no longer stored still show their measurements; p_at: as of that instant (default now()). Example:
SELECT action, tier, win_back_rate, ci_low, ci_high, source FROM reco.retention_effects();$c$;

-- Qini and uplift@k over the matured lists: each list's users in rank order; at the top k share of each,
-- uplift = retention of the treated − retention of the held out. Qini: the area between the uplift curve
-- (incremental users retained, scaled to the list) and the straight line to its end, over the list size.
CREATE OR REPLACE FUNCTION reco.retention_uplift(p_tenant text DEFAULT NULL)
RETURNS TABLE (top_share float8, users bigint, treated bigint, held_out bigint, retention_treated float8,
               retention_held_out float8, uplift float8, incremental float8, qini float8, lists bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _lists bigint;
    _need int := reco.setting('retention_qini_min_lists', _tid)::int;
BEGIN
    SELECT count(*) INTO _lists FROM reco.retention_lists l WHERE l.tenant_id = _tid AND l.measured_at IS NOT NULL
                                                              AND l.held_out > 0;
    IF _lists < _need THEN
        RAISE EXCEPTION 'uplift needs % matured lists with a holdout, the tenant has %', _need, _lists
            USING ERRCODE = 'no_data_found',
                  HINT = 'Wait for more lists to mature (retention_window_days), or lower retention_qini_min_lists.';
    END IF;
    RETURN QUERY
    WITH c AS (
        SELECT x.held_out, x.retained,
               (x.rank::float8 / max(x.rank) OVER (PARTITION BY x.list_id)) AS pos
        FROM reco.retention_contacts x
        JOIN reco.retention_lists l ON l.list_id = x.list_id
        WHERE x.tenant_id = _tid AND l.measured_at IS NOT NULL AND l.held_out > 0
    ), k AS (
        SELECT s.k, count(*) AS n, count(*) FILTER (WHERE NOT c.held_out) AS nt,
               count(*) FILTER (WHERE c.held_out) AS nh,
               count(*) FILTER (WHERE NOT c.held_out AND c.retained)::float8 / nullif(count(*) FILTER (WHERE NOT c.held_out), 0) AS rt,
               count(*) FILTER (WHERE c.held_out AND c.retained)::float8 / nullif(count(*) FILTER (WHERE c.held_out), 0) AS rh
        FROM unnest(ARRAY[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]::float8[]) AS s(k)
        JOIN c ON c.pos <= s.k + 1e-9
        GROUP BY s.k
    ), q AS (
        SELECT k.*, (k.rt - k.rh) * k.n AS inc FROM k
    )
    SELECT q.k, q.n, q.nt, q.nh, q.rt, q.rh, q.rt - q.rh, q.inc,
           -- the area between the curve and the random line (the last point's incremental × share), per user
           (SELECT sum(q2.inc - q2.k * qa.inc) * 0.1 / nullif(qa.n, 0)
            FROM q q2, (SELECT qq.inc, qq.n FROM q qq ORDER BY qq.k DESC LIMIT 1) AS qa GROUP BY qa.n),
           _lists
    FROM q ORDER BY q.k;
END $$;
COMMENT ON FUNCTION reco.retention_uplift(text) IS
$c$Qini and uplift@k of the retention lists, once retention_qini_min_lists have matured: at the top 10 %, 20 %, ...
of every list (by rank), the treated and held-out users, their retention, the uplift (difference), the incremental
users retained (uplift × users) and the Qini coefficient of the whole curve (area above the random line per user;
> 0: the ranking puts the users the actions win back first). Example:
SELECT top_share, uplift, qini FROM reco.retention_uplift();$c$;

-- ---------------------------------------------------------------------------------------
-- REST (the key names the tenant; reco_api may execute these, sql/095_security.sql)
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._retention_list_json(p_tenant_id int, p_list_id int, p_limit int)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'list_id', l.list_id, 'created_at', l.created_at, 'budget', l.budget, 'spent', l.spent,
        'users', l.users, 'treated', l.treated, 'held_out', l.held_out, 'expected_profit', l.expected_profit,
        'holdout', l.holdout, 'scores_as_of', l.scores_as_of, 'matures_at', l.matures_at,
        'measured_at', l.measured_at, 'actions', l.actions,
        'contacts', coalesce((SELECT jsonb_agg(jsonb_build_object(
                'rank', c.rank, 'user_id', c.user_id, 'action', c.action, 'tier', c.tier,
                'probability', c.probability, 'value', c.value, 'win_back_rate', c.win_back_rate,
                'rate_source', c.rate_source, 'cost', c.cost, 'expected_profit', c.expected_profit,
                'held_out', c.held_out, 'retained', c.retained) ORDER BY c.rank)
            FROM (SELECT * FROM reco.retention_list_contacts(l.list_id, t.slug) LIMIT p_limit) AS c), '[]'),
        'truncated', l.users > p_limit)
        -- an empty list says why it can be empty (the usual cause: no value per user)
        || CASE WHEN l.users = 0 THEN jsonb_build_object('note',
               'nobody has a positive expected profit E = p × r × V − cost: V, a user''s value, is '
               || 'retention_value_alpha × their payments of the last 30 days (events of kind churn_payment_kind with '
               || 'the amount in prop churn_payment_prop) or the user attribute named by retention_value_attribute; '
               || 'with neither, V is 0 for everyone. Also check that the tenant has churn scores '
               || '(reco.churn_scores) and users not on the do-not-contact list, in cooldown or at their contact cap.')
           ELSE '{}'::jsonb END
    FROM reco.retention_lists l JOIN reco.tenants t ON t.tenant_id = l.tenant_id
    WHERE l.list_id = p_list_id AND l.tenant_id = p_tenant_id
$$;
COMMENT ON FUNCTION reco._retention_list_json(int, int, int) IS
    'internal: a stored retention list as JSON, its first p_limit contacts in rank order';

CREATE OR REPLACE FUNCTION reco._check_retention_limit(p_limit int)
RETURNS int
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'limit must be from 1 to 100000, not %', coalesce(p_limit::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The contacts returned, in rank order.';
    END IF;
    RETURN p_limit;
END $$;
COMMENT ON FUNCTION reco._check_retention_limit(int) IS 'internal: a list''s page size 1..100000 or invalid_parameter_value';

CREATE OR REPLACE FUNCTION reco.api_retention_list(p_key text, p_budget numeric, p_actions jsonb DEFAULT NULL,
                                                   p_limit int DEFAULT 1000)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := (reco._api_key(p_key)).tenant_id;
    _id int;
BEGIN
    PERFORM reco._check_retention_limit(p_limit);
    _id := reco._retention_list(_tid, p_budget, p_actions, now());
    RETURN reco._retention_list_json(_tid, _id, p_limit);  -- a later statement: it sees the stored list
END $$;
COMMENT ON FUNCTION reco.api_retention_list(text, numeric, jsonb, int) IS
    'reco.retention_list for the tenant of the API key p_key, as JSON (the list and its first p_limit contacts): POST /v1/retention/list';

CREATE OR REPLACE FUNCTION reco.api_retention_list_show(p_key text, p_list_id int DEFAULT NULL, p_limit int DEFAULT 1000)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _tid int := (reco._api_key(p_key)).tenant_id;
    _id int := p_list_id;
    _j jsonb;
BEGIN
    PERFORM reco._check_retention_limit(p_limit);
    IF _id IS NULL THEN
        SELECT l.list_id INTO _id FROM reco.retention_lists l WHERE l.tenant_id = _tid
        ORDER BY l.created_at DESC, l.list_id DESC LIMIT 1;
    END IF;
    _j := reco._retention_list_json(_tid, _id, p_limit);
    IF _j IS NULL THEN
        RAISE EXCEPTION 'no retention list %', coalesce(_id::text, 'yet')
            USING ERRCODE = 'no_data_found', HINT = 'Make one: POST /v1/retention/list {"budget": 500}.';
    END IF;
    RETURN _j;
END $$;
COMMENT ON FUNCTION reco.api_retention_list_show(text, int, int) IS
    'a stored retention list of the tenant of the API key p_key (the latest when p_list_id is NULL) as JSON: GET /v1/retention/list';
