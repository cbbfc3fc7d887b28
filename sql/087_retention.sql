-- The budgeted retention list: whom to contact, with which action, to win back users about to churn.
--
--   V(u)        = retention_value_alpha × the user's payments of the last 30 days (events of kind
--                 churn_payment_kind, numeric prop churn_payment_prop), or the user attribute named by
--                 retention_value_attribute when it is set (a tenant's own value column, taken as it is)
--   E(u, a)     = p(u) × r(a, tier(u)) × V(u) − cost(a)    p: the user's current churn score (reco.churn_scores,
--                 the tenant's latest as_of); r: the action's win-back rate for the user's tier, measured by the
--                 loop once significant (sql/088_retention_loop.sql), else the assumed one
--   best action = the largest E (ties: the cheaper, then the name); E > 0 only
--   paid picks  = users whose best action costs something, by E / cost (largest first), while the treated
--                 users' costs add up to at most the budget (a prefix: the list never skips a user to fit a
--                 cheaper one after it)
--   free picks  = the others with a free action of E > 0 (outside the budget): their best free action
--   excluded    = the do-not-contact list, users contacted within retention_cooldown, users contacted
--                 retention_max_contacts times within retention_cap_window (held-out users were not contacted)
--   holdout     = a retention_holdout share of the list, drawn by the list's experiment (variants holdout and
--                 treated, the experiment's salt): picked like the others, not contacted, their cost not spent
--
-- Every list is stored (reco.retention_lists, reco.retention_contacts) so that the loop can measure it.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

-- Its settings' defaults are in sql/010_tenants_settings.sql (every default in one place), their rules in 011.

-- ---------------------------------------------------------------------------------------
-- Actions
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.retention_default_actions()
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{"coupon": {"cost": 5.00, "win_back_rate": 0.30},
             "sms": {"cost": 0.05, "win_back_rate": 0.10},
             "push": {"cost": 0, "win_back_rate": 0.03}}'::jsonb
$$;
COMMENT ON FUNCTION reco.retention_default_actions() IS
$c$the product brief's retention actions, used by a tenant that stored none: coupon 5.00 / 30 %, sms 0.05 / 10 %,
push 0 / 3 % (cost per contact / assumed share of would-be churners won back). Example:
SELECT reco.retention_default_actions() -> 'coupon';  -- {"cost": 5.00, "win_back_rate": 0.30}$c$;

-- p_actions checked: an object of 1-20 actions, each {cost: 0..1e6, win_back_rate: 0..1}; normalised
CREATE OR REPLACE FUNCTION reco._check_retention_actions(p_actions jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    _a record;
    _bad text;
    _out jsonb := '{}';
BEGIN
    IF p_actions IS NULL OR jsonb_typeof(p_actions) <> 'object'
       OR (SELECT count(*) FROM jsonb_object_keys(p_actions)) NOT BETWEEN 1 AND 20 THEN
        RAISE EXCEPTION 'actions must be a JSON object of 1 to 20 actions'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'e.g. ''{"coupon": {"cost": 5.00, "win_back_rate": 0.30}, "push": {"cost": 0, "win_back_rate": 0.03}}''';
    END IF;
    FOR _a IN SELECT key, value FROM jsonb_each(p_actions) ORDER BY key LOOP
        _bad := CASE
            WHEN _a.key !~ '^[a-z0-9][a-z0-9_-]{0,62}$'
                THEN 'its name must be 1-63 lower-case letters, digits, "_" or "-"'
            WHEN jsonb_typeof(_a.value) <> 'object' THEN 'it must be an object {"cost": .., "win_back_rate": ..}'
            WHEN EXISTS (SELECT 1 FROM jsonb_object_keys(_a.value) k WHERE k NOT IN ('cost', 'win_back_rate'))
                THEN 'it takes only cost and win_back_rate'
            WHEN jsonb_typeof(_a.value -> 'cost') IS DISTINCT FROM 'number'
                 OR (_a.value ->> 'cost')::numeric NOT BETWEEN 0 AND 1000000
                THEN 'cost must be a number from 0 to 1000000'
            WHEN jsonb_typeof(_a.value -> 'win_back_rate') IS DISTINCT FROM 'number'
                 OR (_a.value ->> 'win_back_rate')::numeric NOT BETWEEN 0 AND 1
                THEN 'win_back_rate must be a number from 0 to 1'
        END;
        IF _bad IS NOT NULL THEN
            RAISE EXCEPTION 'action "%": %', left(_a.key, 63), _bad
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'e.g. {"coupon": {"cost": 5.00, "win_back_rate": 0.30}}: cost per contact, share of would-be churners won back.';
        END IF;
        _out := _out || jsonb_build_object(_a.key, jsonb_build_object(
            'cost', (_a.value ->> 'cost')::numeric, 'win_back_rate', (_a.value ->> 'win_back_rate')::float8));
    END LOOP;
    RETURN _out;
END $$;
COMMENT ON FUNCTION reco._check_retention_actions(jsonb) IS
    'internal: retention actions checked ({name: {cost, win_back_rate}}, 1-20 of them) or invalid_parameter_value';

CREATE OR REPLACE FUNCTION reco._retention_actions(p_tenant_id int, p_actions jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_actions IS NOT NULL THEN
        RETURN reco._check_retention_actions(p_actions);
    END IF;
    RETURN coalesce(
        (SELECT jsonb_object_agg(a.action, jsonb_build_object('cost', a.cost, 'win_back_rate', a.win_back_rate))
         FROM reco.retention_actions a WHERE a.tenant_id = p_tenant_id),
        reco.retention_default_actions());
END $$;
COMMENT ON FUNCTION reco._retention_actions(int, jsonb) IS
    'internal: the actions a list uses: p_actions (checked) if given, else the tenant''s stored ones, else the defaults';

CREATE OR REPLACE FUNCTION reco.set_retention_action(p_action text, p_cost numeric, p_win_back_rate float8,
                                                     p_tenant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _a jsonb := reco._check_retention_actions(
        jsonb_build_object(p_action, jsonb_build_object('cost', p_cost, 'win_back_rate', p_win_back_rate)));
BEGIN
    -- the first stored action starts from the defaults, so storing one does not drop the others
    IF NOT EXISTS (SELECT 1 FROM reco.retention_actions WHERE tenant_id = _tid) THEN
        INSERT INTO reco.retention_actions (tenant_id, action, cost, win_back_rate)
        SELECT _tid, d.key, (d.value ->> 'cost')::numeric, (d.value ->> 'win_back_rate')::float8
        FROM jsonb_each(reco.retention_default_actions()) AS d;
    END IF;
    INSERT INTO reco.retention_actions (tenant_id, action, cost, win_back_rate)
    VALUES (_tid, p_action, (_a -> p_action ->> 'cost')::numeric, (_a -> p_action ->> 'win_back_rate')::float8)
    ON CONFLICT ON CONSTRAINT retention_actions_pkey
        DO UPDATE SET cost = excluded.cost, win_back_rate = excluded.win_back_rate, updated_at = now();
    RETURN reco._retention_actions(_tid);
END $$;
COMMENT ON FUNCTION reco.set_retention_action(text, numeric, float8, text) IS
$c$store a retention action of the tenant: cost per contact and the assumed win-back rate (share of would-be
churners it wins back, 0..1, used until the loop has measured it). The first one stored copies the defaults
(coupon, sms, push) so they stay. Returns every action of the tenant. Example:
SELECT reco.set_retention_action('email', 0.01, 0.05);$c$;

CREATE OR REPLACE FUNCTION reco.remove_retention_action(p_action text, p_tenant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM reco.retention_actions WHERE tenant_id = _tid) THEN
        PERFORM reco.set_retention_action(d.key, (d.value ->> 'cost')::numeric, (d.value ->> 'win_back_rate')::float8,
                                          p_tenant)
        FROM jsonb_each(reco.retention_default_actions()) AS d;
    END IF;
    DELETE FROM reco.retention_actions WHERE tenant_id = _tid AND action = p_action;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown retention action "%"', p_action
            USING ERRCODE = 'no_data_found', HINT = 'SELECT reco.retention_actions(); lists them.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM reco.retention_actions WHERE tenant_id = _tid) THEN
        RAISE EXCEPTION 'a tenant keeps at least one retention action'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Store another first: reco.set_retention_action.';
    END IF;
    RETURN reco._retention_actions(_tid);
END $$;
COMMENT ON FUNCTION reco.remove_retention_action(text, text) IS
$c$remove a retention action of the tenant (at least one stays); returns the remaining ones. Example:
SELECT reco.remove_retention_action('sms');$c$;

CREATE OR REPLACE FUNCTION reco.retention_actions(p_tenant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT reco._retention_actions(reco._tenant_id(p_tenant))
$$;
COMMENT ON FUNCTION reco.retention_actions(text) IS
$c$the tenant's retention actions with cost and assumed win-back rate (the defaults when it stored none). Example:
SELECT reco.retention_actions();  -- {"sms": {"cost": 0.05, "win_back_rate": 0.1}, "push": ..., "coupon": ...}$c$;

-- ---------------------------------------------------------------------------------------
-- Do not contact
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._retention_user_key(p_tenant_id int, p_user_id text)
RETURNS int
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _key int;
BEGIN
    SELECT user_key INTO _key FROM reco.users WHERE tenant_id = p_tenant_id AND user_id = p_user_id;
    IF _key IS NULL THEN
        RAISE EXCEPTION 'unknown user "%"', left(p_user_id, 200)
            USING ERRCODE = 'no_data_found', HINT = 'Users are created by ingest (reco.upsert_users, reco.ingest_events).';
    END IF;
    RETURN _key;
END $$;
COMMENT ON FUNCTION reco._retention_user_key(int, text) IS 'internal: a user''s key, or no_data_found';

CREATE OR REPLACE FUNCTION reco.add_do_not_contact(p_user_id text, p_reason text DEFAULT '', p_tenant text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
BEGIN
    IF length(coalesce(p_reason, '')) > 500 THEN
        RAISE EXCEPTION 'reason is longer than 500 characters' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Shorten it.';
    END IF;
    INSERT INTO reco.retention_do_not_contact (tenant_id, user_key, reason)
    VALUES (_tid, reco._retention_user_key(_tid, p_user_id), coalesce(p_reason, ''))
    ON CONFLICT ON CONSTRAINT retention_do_not_contact_pkey DO NOTHING;
    RETURN FOUND;
END $$;
COMMENT ON FUNCTION reco.add_do_not_contact(text, text, text) IS
$c$put a user on the do-not-contact list: no retention list includes them (true: added, false: already there).
Example: SELECT reco.add_do_not_contact('U42', 'asked by e-mail');$c$;

CREATE OR REPLACE FUNCTION reco.remove_do_not_contact(p_user_id text, p_tenant text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
BEGIN
    DELETE FROM reco.retention_do_not_contact
    WHERE tenant_id = _tid AND user_key = reco._retention_user_key(_tid, p_user_id);
    RETURN FOUND;
END $$;
COMMENT ON FUNCTION reco.remove_do_not_contact(text, text) IS
$c$take a user off the do-not-contact list (true: removed, false: was not on it).
Example: SELECT reco.remove_do_not_contact('U42');$c$;

CREATE OR REPLACE VIEW reco.retention_do_not_contact_list AS
SELECT t.slug AS tenant, u.user_id, d.reason, d.added_at
FROM reco.retention_do_not_contact d
JOIN reco.tenants t ON t.tenant_id = d.tenant_id
JOIN reco.users u ON u.tenant_id = d.tenant_id AND u.user_key = d.user_key;
COMMENT ON VIEW reco.retention_do_not_contact_list IS
    'the users no retention list contacts, per tenant, with the reason and when they were added';

-- ---------------------------------------------------------------------------------------
-- The list
-- ---------------------------------------------------------------------------------------

-- Build and store one list at p_now; returns its id. p_salt: the holdout's hash salt (default
-- 'retention-list-<id>'). Tests and the benchmark pass p_now to simulate rounds; reco.retention_list
-- passes now().
CREATE OR REPLACE FUNCTION reco._retention_list(p_tenant_id int, p_budget numeric, p_actions jsonb,
                                                p_now timestamptz, p_salt text DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    _actions jsonb := reco._retention_actions(p_tenant_id, p_actions);
    _rates jsonb;
    _alpha numeric := reco.setting('retention_value_alpha', p_tenant_id)::numeric;
    _attr text := reco.setting('retention_value_attribute', p_tenant_id) #>> '{}';
    _kind text := reco.setting('churn_payment_kind', p_tenant_id) #>> '{}';
    _prop text := reco.setting('churn_payment_prop', p_tenant_id) #>> '{}';
    _h float8 := reco.setting('retention_holdout', p_tenant_id)::float8;
    _window int := reco.setting('retention_window_days', p_tenant_id)::int;
    _max int := reco.setting('retention_max_contacts', p_tenant_id)::int;
    _capw interval := (reco.setting('retention_cap_window', p_tenant_id) #>> '{}')::interval;
    _cool interval := (reco.setting('retention_cooldown', p_tenant_id) #>> '{}')::interval;
    _as_of date;
    _id int;
    _salt text;
    _eid int;
    _slug text := (SELECT slug FROM reco.tenants WHERE tenant_id = p_tenant_id);
BEGIN
    IF p_budget IS NULL OR p_budget < 0 OR p_budget > 1e9 THEN
        RAISE EXCEPTION 'budget must be a number from 0 to 1000000000, not %', coalesce(p_budget::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The most the list may spend on paid actions, e.g. 500.';
    END IF;
    SELECT max(as_of) INTO _as_of FROM reco.churn_scores WHERE tenant_id = p_tenant_id AND as_of <= p_now::date;
    IF _as_of IS NULL THEN
        RAISE EXCEPTION 'tenant "%" has no churn scores', _slug
            USING ERRCODE = 'no_data_found',
                  HINT = 'Train and score first: CALL reco.run_job(''churn_train''); CALL reco.run_job(''churn_score'');';
    END IF;
    -- one list at a time per tenant: two at once would both pass the cooldown and contact the same users
    PERFORM pg_advisory_xact_lock(reco.lock_key('retention_list'), p_tenant_id);
    PERFORM reco._measure_retention_lists(p_tenant_id, p_now);  -- matured lists first: their rates apply now
    _rates := reco._retention_rates(p_tenant_id, _actions, p_now);

    INSERT INTO reco.retention_lists (tenant_id, created_at, budget, scores_as_of, actions, settings, holdout, salt,
                                      matures_at)
    VALUES (p_tenant_id, p_now, p_budget, _as_of, _rates,
            jsonb_build_object('retention_value_alpha', _alpha, 'retention_value_attribute', _attr,
                               'churn_payment_kind', _kind, 'churn_payment_prop', _prop,
                               'retention_window_days', _window, 'retention_max_contacts', _max,
                               'retention_cap_window', _capw, 'retention_cooldown', _cool),
            _h, '', p_now + make_interval(days => _window))
    RETURNING list_id INTO _id;
    _salt := coalesce(p_salt, 'retention-list-' || _id);
    -- the holdout is an experiment of the existing machinery: variants holdout (the control) and treated,
    -- the user's variant reco.bucket(salt, user_id) against the weights, as reco._assignment picks it. It
    -- never serves (scenario 'retention', stopped once the list is drawn): it records the split.
    IF _h > 0 THEN
        INSERT INTO reco.scenarios (tenant_id, name, overrides, description)
        VALUES (p_tenant_id, 'retention', '{}', 'retention lists: each list''s holdout experiment (serves nothing)')
        ON CONFLICT ON CONSTRAINT scenarios_pkey DO NOTHING;
        _eid := reco.create_experiment(
            'retention-list-' || _id,
            jsonb_build_array(jsonb_build_object('name', 'holdout', 'weight', _h),
                              jsonb_build_object('name', 'treated', 'weight', 1 - _h)),
            jsonb_build_object('scenario', 'retention', 'salt', _salt,
                               'description', format('holdout of retention list %s (reco.retention_effects)', _id)),
            _slug);
        UPDATE reco.experiments SET status = 'stopped', ns_start = 0, started_at = p_now, stopped_at = p_now
        WHERE experiment_id = _eid;
    END IF;

    INSERT INTO reco.retention_contacts (tenant_id, list_id, user_key, rank, action, tier, probability, value,
                                         win_back_rate, rate_source, cost, expected_profit, held_out, contacted_at)
    WITH scored AS (
        SELECT s.user_key, u.user_id, u.attributes, s.probability, s.tier
        FROM reco.churn_scores s
        JOIN reco.users u ON u.tenant_id = s.tenant_id AND u.user_key = s.user_key
        WHERE s.tenant_id = p_tenant_id AND s.as_of = _as_of
          AND NOT EXISTS (SELECT 1 FROM reco.retention_do_not_contact d
                          WHERE d.tenant_id = p_tenant_id AND d.user_key = s.user_key)
          AND NOT EXISTS (SELECT 1 FROM reco.retention_contacts c
                          WHERE c.tenant_id = p_tenant_id AND c.user_key = s.user_key AND NOT c.held_out
                            AND c.contacted_at > p_now - _cool AND c.contacted_at <= p_now)
          AND (SELECT count(*) FROM reco.retention_contacts c
               WHERE c.tenant_id = p_tenant_id AND c.user_key = s.user_key AND NOT c.held_out
                 AND c.contacted_at > p_now - _capw AND c.contacted_at <= p_now) < _max
    ), valued AS (
        SELECT sc.*, reco.bucket(_salt, sc.user_id) < _h AS held_out,
               CASE WHEN _attr <> '' THEN coalesce(reco._parse_number(sc.attributes ->> _attr), 0)
                    ELSE _alpha * coalesce(
                        (SELECT sum(reco._parse_number(e.props ->> _prop)) FROM reco.events e
                         WHERE e.tenant_id = p_tenant_id AND e.user_key = sc.user_key AND e.kind = _kind
                           AND e.occurred_at >= p_now - interval '30 days' AND e.occurred_at < p_now), 0)
               END AS value
        FROM scored sc
    ), options AS (
        SELECT v.user_key, v.held_out, v.probability, v.tier, v.value, a.key AS action,
               (a.value ->> 'cost')::numeric AS cost,
               (_rates -> a.key -> 'tiers' -> v.tier ->> 'rate')::float8 AS rate,
               _rates -> a.key -> 'tiers' -> v.tier ->> 'source' AS source,
               (v.probability * (_rates -> a.key -> 'tiers' -> v.tier ->> 'rate')::float8)::numeric * v.value
                   - (a.value ->> 'cost')::numeric AS e
        FROM valued v CROSS JOIN jsonb_each(_actions) AS a
    ), best AS (
        SELECT DISTINCT ON (o.user_key) o.* FROM options o
        ORDER BY o.user_key, o.e DESC NULLS LAST, o.cost, o.action
    ), paid AS (
        SELECT b.*, sum(CASE WHEN b.held_out THEN 0 ELSE b.cost END)
                        OVER (ORDER BY b.e / b.cost DESC, b.user_key ROWS UNBOUNDED PRECEDING) AS spent,
               row_number() OVER (ORDER BY b.e / b.cost DESC, b.user_key) AS n
        FROM best b WHERE b.cost > 0 AND b.e > 0
    ), paid_in AS (
        SELECT * FROM paid WHERE spent <= p_budget
    ), free AS (
        SELECT DISTINCT ON (o.user_key) o.* FROM options o
        WHERE o.cost = 0 AND o.e > 0 AND o.user_key NOT IN (SELECT user_key FROM paid_in)
        ORDER BY o.user_key, o.e DESC NULLS LAST, o.action
    ), picked AS (
        SELECT p.user_key, p.held_out, p.probability, p.tier, p.value, p.action, p.cost, p.rate, p.source, p.e,
               p.n AS ord, 0 AS part FROM paid_in p
        UNION ALL
        SELECT f.user_key, f.held_out, f.probability, f.tier, f.value, f.action, f.cost, f.rate, f.source, f.e,
               row_number() OVER (ORDER BY f.e DESC, f.user_key), 1 FROM free f
    )
    SELECT p_tenant_id, _id, pk.user_key, row_number() OVER (ORDER BY pk.part, pk.ord), pk.action, pk.tier,
           pk.probability, round(pk.value, 4), pk.rate, pk.source, pk.cost, round(pk.e, 4), pk.held_out, p_now
    FROM picked pk;

    UPDATE reco.retention_lists l SET
        salt = _salt, experiment_id = _eid,
        users = s.users, treated = s.treated, held_out = s.held_out, spent = s.spent, expected_profit = s.profit
    FROM (SELECT count(*) AS users, count(*) FILTER (WHERE NOT c.held_out) AS treated,
                 count(*) FILTER (WHERE c.held_out) AS held_out,
                 coalesce(sum(c.cost) FILTER (WHERE NOT c.held_out), 0) AS spent,
                 coalesce(sum(c.expected_profit) FILTER (WHERE NOT c.held_out), 0) AS profit
          FROM reco.retention_contacts c WHERE c.list_id = _id) AS s
    WHERE l.list_id = _id;
    RETURN _id;
END $$;
COMMENT ON FUNCTION reco._retention_list(int, numeric, jsonb, timestamptz, text) IS
    'internal: build and store one retention list at p_now (reco.retention_list passes now()); returns its id';

CREATE OR REPLACE FUNCTION reco.retention_list_contacts(p_list_id int DEFAULT NULL, p_tenant text DEFAULT NULL)
RETURNS TABLE (list_id int, rank int, user_id text, action text, tier text, probability float8, value numeric,
               win_back_rate float8, rate_source text, cost numeric, expected_profit numeric, held_out boolean,
               retained boolean)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _id int := p_list_id;
BEGIN
    IF _id IS NULL THEN
        SELECT l.list_id INTO _id FROM reco.retention_lists l WHERE l.tenant_id = _tid
        ORDER BY l.created_at DESC, l.list_id DESC LIMIT 1;
    END IF;
    IF _id IS NULL OR NOT EXISTS (SELECT 1 FROM reco.retention_lists l WHERE l.list_id = _id AND l.tenant_id = _tid) THEN
        RAISE EXCEPTION 'no retention list %', coalesce(_id::text, 'yet')
            USING ERRCODE = 'no_data_found', HINT = 'Make one: SELECT * FROM reco.retention_list(500);';
    END IF;
    RETURN QUERY
    SELECT c.list_id, c.rank, u.user_id, c.action, c.tier, c.probability, c.value, c.win_back_rate, c.rate_source,
           c.cost, c.expected_profit, c.held_out, c.retained
    FROM reco.retention_contacts c
    JOIN reco.users u ON u.tenant_id = c.tenant_id AND u.user_key = c.user_key
    WHERE c.list_id = _id
    ORDER BY c.rank;
END $$;
COMMENT ON FUNCTION reco.retention_list_contacts(int, text) IS
$c$the users of a stored retention list (the latest when p_list_id is NULL), in rank order: action, churn tier and
probability, value, the win-back rate used and whether it was measured or assumed, cost, expected profit, whether
held out (not to be contacted), and once matured whether the user stayed. Example:
SELECT user_id, action, expected_profit FROM reco.retention_list_contacts() WHERE NOT held_out;$c$;

DROP FUNCTION IF EXISTS reco.retention_list(numeric, jsonb, text);  -- now with p_at
CREATE OR REPLACE FUNCTION reco.retention_list(p_budget numeric, p_actions jsonb DEFAULT NULL, p_tenant text DEFAULT NULL,
                                               p_at timestamptz DEFAULT now())
RETURNS TABLE (list_id int, rank int, user_id text, action text, tier text, probability float8, value numeric,
               win_back_rate float8, rate_source text, cost numeric, expected_profit numeric, held_out boolean)
LANGUAGE plpgsql AS $$
DECLARE
    _id int := reco._retention_list(reco._tenant_id(p_tenant), p_budget, p_actions, p_at);
BEGIN
    -- a statement of its own: a stable function sees what an earlier statement stored, not what its own did
    RETURN QUERY
    SELECT c.list_id, c.rank, c.user_id, c.action, c.tier, c.probability, c.value, c.win_back_rate, c.rate_source,
           c.cost, c.expected_profit, c.held_out
    FROM reco.retention_list_contacts(_id, p_tenant) AS c;
END $$;
COMMENT ON FUNCTION reco.retention_list(numeric, jsonb, text, timestamptz) IS
$c$make and store today's retention list: from the current churn scores, each user's best action by expected profit
E = p × r × V − cost (r: the measured win-back rate of the action in the user's tier once significant, else the
assumed one; V: retention_value_alpha × 30-day payments, or the retention_value_attribute), paid actions by E/cost
within p_budget (what the treated users cost), free actions outside it, E > 0 only; do-not-contact, cooldown and
contact cap respected; a retention_holdout share held out (held_out: do not contact; it measures the actions).
p_actions ({name: {cost, win_back_rate}}) replaces the tenant's actions for this list; p_at is the list's instant
(default now(): a simulation or a backfill draws it at another). Example:
SELECT user_id, action, expected_profit FROM reco.retention_list(500) WHERE NOT held_out;$c$;

CREATE OR REPLACE VIEW reco.retention_list_summary AS
SELECT t.slug AS tenant, l.list_id, l.created_at, l.budget, l.spent, l.users, l.treated, l.held_out,
       l.expected_profit, l.holdout, e.name AS experiment, l.scores_as_of, l.matures_at, l.measured_at,
       (SELECT count(*) FILTER (WHERE c.retained AND NOT c.held_out) FROM reco.retention_contacts c
        WHERE c.list_id = l.list_id) AS treated_retained,
       (SELECT count(*) FILTER (WHERE c.retained AND c.held_out) FROM reco.retention_contacts c
        WHERE c.list_id = l.list_id) AS held_out_retained
FROM reco.retention_lists l
JOIN reco.tenants t ON t.tenant_id = l.tenant_id
LEFT JOIN reco.experiments e ON e.experiment_id = l.experiment_id;
COMMENT ON VIEW reco.retention_list_summary IS
    'every stored retention list: budget, spent, users treated and held out, expected profit, its holdout experiment, when it matures and, once measured, how many stayed in each arm';

-- ---------------------------------------------------------------------------------------
-- The tables (migration 0026), for analysts
-- ---------------------------------------------------------------------------------------

COMMENT ON TABLE reco.retention_actions IS
    'the retention actions of a tenant (cost per contact, assumed win-back rate); none stored: reco.retention_default_actions()';
COMMENT ON COLUMN reco.retention_actions.win_back_rate IS
    'assumed share of would-be churners the action wins back (0..1), until the loop measures it (reco.retention_effects)';
COMMENT ON TABLE reco.retention_do_not_contact IS
    'users no retention list contacts (reco.add_do_not_contact / reco.remove_do_not_contact)';
COMMENT ON TABLE reco.retention_lists IS
    'one row per retention list drawn (reco.retention_list): budget, the rates used per action and tier, holdout and its experiment, spent, expected profit, when it matures and was measured';
COMMENT ON COLUMN reco.retention_lists.actions IS
    'per action: cost, assumed_rate and per tier the rate used and its source (assumed or measured, with its interval)';
COMMENT ON COLUMN reco.retention_lists.salt IS
    'the holdout''s hash salt: a user is held out when reco.bucket(salt, user_id) < holdout (the experiment''s variant pick)';
COMMENT ON TABLE reco.retention_contacts IS
    'the users of each retention list: action, churn tier and probability, value, rate used, cost, expected profit, held out or treated, and once matured whether they stayed';
COMMENT ON COLUMN reco.retention_contacts.retained IS
    'NULL until the list matures; then whether the user had an event in (contacted_at, matures_at]';
COMMENT ON COLUMN reco.retention_contacts.held_out IS
    'picked like the others but not to be contacted: the control of the list''s experiment';
