-- Settings under running experiments: every change of a tenant's settings is kept in
-- reco.settings_history, and a change that would alter what a running experiment's arms serve is
-- refused unless forced. A trigger on reco.settings does both, so every writer is covered
-- (reco.set_setting, reco.reset_setting, the tune's apply, a DBA's UPDATE); the tune asks first
-- (reco.settings_change_blocked) and records "not applied" instead of failing.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.
--
-- Sync contract: the settings no arm reads are listed once, in reco.experiment_neutral_settings();
-- a new setting counts as read by the arms until it is listed there.

CREATE OR REPLACE FUNCTION reco.experiment_neutral_settings()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{evaluation_users,tune_min_gain,exposure_retention,rebase_after,max_future,max_event_age,
             plan_window_days,churn_window_days,churn_observation_days,churn_activity_kinds,
             churn_snapshot_every_days,churn_train_snapshots,churn_validation_snapshots,churn_min_history_days,
             churn_min_churners,churn_tier_high,churn_tier_medium,churn_l2,churn_lightgbm_min_rows,churn_payment_kind,
             churn_payment_prop,churn_psi_retrain,churn_auc_drop_retrain,
             retention_value_alpha,retention_value_attribute,retention_holdout,
             retention_window_days,retention_max_contacts,retention_cap_window,retention_cooldown,retention_alpha,
             retention_min_held_out,retention_qini_min_lists}'::text[]
$$;
COMMENT ON FUNCTION reco.experiment_neutral_settings() IS
$c$the settings that do not change what an experiment's variants serve (evaluation and tune parameters, retention,
the decay epoch's rebase point, ingest bounds, /plan's window, the churn definitions and models, the retention lists' settings): changed freely under a running experiment. Every
other setting is read by the arms, directly (weights, MMR, candidates) or through the jobs (neighbour model, K, τ).$c$;

CREATE OR REPLACE FUNCTION reco.settings_change_blockers(p_tenant_id int, p_keys text[])
RETURNS TABLE (experiment text, scenario text, started_at timestamptz, keys text[])
LANGUAGE sql STABLE AS $$
    SELECT e.name, e.scenario, e.started_at, array_agg(DISTINCT k.key ORDER BY k.key)
    FROM reco.experiments e
    CROSS JOIN unnest(p_keys) AS k(key)
    LEFT JOIN reco.scenarios s ON s.tenant_id = e.tenant_id AND s.name = e.scenario
    WHERE e.tenant_id = p_tenant_id AND e.status = 'running'
      AND k.key <> ALL (reco.experiment_neutral_settings())
      -- the scenario's override hides the tenant's value from every arm
      AND NOT coalesce(s.overrides ? k.key, false)
      -- an arm without its own override serves the tenant's value
      AND EXISTS (SELECT 1 FROM reco.experiment_variants v
                  WHERE v.experiment_id = e.experiment_id AND NOT v.overrides ? k.key)
    GROUP BY e.experiment_id, e.name, e.scenario, e.started_at
    ORDER BY e.name
$$;
COMMENT ON FUNCTION reco.settings_change_blockers(int, text[]) IS
$c$the running experiments of a tenant whose arms read some of p_keys (not overridden by the experiment's scenario,
nor by every one of its variants; reco.experiment_neutral_settings() excepted), with the keys each reads.
Example: SELECT * FROM reco.settings_change_blockers(reco._tenant_id('default'), '{weight_usercf,neighbors_k}');$c$;

-- The one sentence a refusal (and the tune's "not applied") says; NULL: nothing running reads p_keys.
CREATE OR REPLACE FUNCTION reco.settings_change_blocked(p_tenant_id int, p_keys text[])
RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT 'running experiment' || CASE WHEN count(*) > 1 THEN 's ' ELSE ' ' END
           || string_agg(format('"%s" (scenario %s, since %s) reads %s', b.experiment, b.scenario,
                                to_char(b.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'),
                                array_to_string(b.keys, ', ')), '; ' ORDER BY b.experiment)
    FROM reco.settings_change_blockers(p_tenant_id, p_keys) AS b
    HAVING count(*) > 0
$$;
COMMENT ON FUNCTION reco.settings_change_blocked(int, text[]) IS
$c$why a change of p_keys would alter what a running experiment serves (its name, scenario, start and the keys its
arms read), NULL when it would not. The tune asks this before applying. Example:
SELECT reco.settings_change_blocked(reco._tenant_id('default'), '{weight_usercf}');
-- running experiment "usercf-boost" (scenario home, since 2026-12-08 00:00 UTC) reads weight_usercf$c$;

CREATE OR REPLACE FUNCTION reco.force_settings_change(p_reason text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(btrim(p_reason), '') = '' THEN
        RAISE EXCEPTION 'a forced settings change needs a reason'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'It is kept in reco.settings_history and shown in the experiment''s report: '
                         'SELECT reco.force_settings_change(''weights fix, agreed with the experiment owner'');';
    END IF;
    PERFORM set_config('reco.settings_force', btrim(p_reason), true);
END $$;
COMMENT ON FUNCTION reco.force_settings_change(text) IS
$c$allow, until the end of the transaction, settings changes that running experiments' arms read; the reason is
recorded with each change (reco.settings_history.reason, forced). Example:
BEGIN; SELECT reco.force_settings_change('bug fix'); SELECT reco.set_setting('weight_usercf', '0.3'); COMMIT;$c$;

CREATE OR REPLACE FUNCTION reco.assert_settings_change_allowed(p_tenant_id int, p_keys text[])
RETURNS text[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _why text := reco.settings_change_blocked(p_tenant_id, p_keys);
BEGIN
    IF _why IS NULL THEN
        RETURN '{}';
    END IF;
    IF coalesce(current_setting('reco.settings_force', true), '') <> '' THEN
        RETURN ARRAY(SELECT b.experiment FROM reco.settings_change_blockers(p_tenant_id, p_keys) AS b);
    END IF;
    RAISE EXCEPTION 'settings change refused: %', _why
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'It would change what the control (and every arm without its own override) serves in the '
                     'middle of the test. Stop the experiment first (reco.stop_experiment), test the change as a '
                     'variant of a new one, or force it with a reason: BEGIN; SELECT reco.force_settings_change('
                     '''why''); <the change>; COMMIT;';
END $$;
COMMENT ON FUNCTION reco.assert_settings_change_allowed(int, text[]) IS
$c$raise object_not_in_prerequisite_state (naming the experiments) when changing p_keys would alter what a running
experiment's arms serve, unless reco.force_settings_change was called in this transaction; returns the experiments
a forced change overrides ('{}': none). Every write of reco.settings calls it (trigger). Example:
SELECT reco.assert_settings_change_allowed(reco._tenant_id('default'), '{weight_usercf}');$c$;

-- The trigger: the value in force before and after (a missing override is the default); an
-- unchanged value is no change. Evaluation scopes (the tune's trials) and a tenant being dropped
-- (its settings go by cascade) are neither guarded nor logged.
CREATE OR REPLACE FUNCTION reco._settings_log()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    _row reco.settings := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    _default jsonb;
    _old jsonb;
    _new jsonb;
    _overridden text[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM reco.tenants t WHERE t.tenant_id = _row.tenant_id AND t.evaluation_of IS NULL) THEN
        RETURN NULL;
    END IF;
    SELECT d.default_value INTO _default FROM reco.setting_definitions d WHERE d.key = _row.key;
    _old := CASE WHEN TG_OP = 'INSERT' THEN _default ELSE OLD.value END;
    _new := CASE WHEN TG_OP = 'DELETE' THEN _default ELSE NEW.value END;
    IF _old IS NOT DISTINCT FROM _new THEN
        RETURN NULL;
    END IF;
    _overridden := reco.assert_settings_change_allowed(_row.tenant_id, ARRAY[_row.key]);
    INSERT INTO reco.settings_history (tenant_id, key, old_value, new_value, changed_by, forced, reason, experiments)
    VALUES (_row.tenant_id, _row.key, _old, _new,
            format('%s (%s)', coalesce(nullif(current_setting('reco.settings_source', true), ''),
                                       nullif(current_setting('application_name', true), ''), 'sql'), session_user),
            cardinality(_overridden) > 0, nullif(current_setting('reco.settings_force', true), ''), _overridden);
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER settings_history_trg
    AFTER INSERT OR UPDATE OR DELETE ON reco.settings
    FOR EACH ROW EXECUTE FUNCTION reco._settings_log();

COMMENT ON TABLE reco.settings_history IS
    'every change of a tenant''s settings (reco.settings, any writer): key, the value in force before and after (the default when there was no override), when, by what (reco.settings_source or application_name, and the role); forced: it changed what running experiments (experiments) serve, with reason';
COMMENT ON COLUMN reco.settings_history.experiments IS
    'the running experiments whose arms read the key when a forced change went through (reco.force_settings_change)';

CREATE OR REPLACE FUNCTION reco.experiment_settings_changes(p_name text, p_tenant text DEFAULT NULL)
RETURNS TABLE (changed_at timestamptz, key text, old_value jsonb, new_value jsonb, changed_by text,
               arms_read boolean, forced boolean, reason text)
LANGUAGE sql STABLE AS $$
    SELECT h.changed_at, h.key, h.old_value, h.new_value, h.changed_by,
           h.key <> ALL (reco.experiment_neutral_settings())
           AND NOT coalesce((SELECT s.overrides ? h.key FROM reco.scenarios s
                             WHERE s.tenant_id = e.tenant_id AND s.name = e.scenario), false)
           AND EXISTS (SELECT 1 FROM reco.experiment_variants v
                       WHERE v.experiment_id = e.experiment_id AND NOT v.overrides ? h.key),
           h.forced, h.reason
    FROM reco.experiments e
    JOIN reco.settings_history h ON h.tenant_id = e.tenant_id
         AND h.changed_at >= e.started_at AND h.changed_at < coalesce(e.stopped_at, 'infinity')
    WHERE e.tenant_id = reco._tenant_id(p_tenant) AND e.name = p_name
    ORDER BY h.change_id
$$;
COMMENT ON FUNCTION reco.experiment_settings_changes(text, text) IS
$c$the tenant's settings changes while an experiment ran (started_at to stopped_at or now), each with whether its
arms read the key (arms_read: the control, or an arm without its own override, served the new value) and whether it
was forced, with the reason. Example: SELECT * FROM reco.experiment_settings_changes('usercf-boost');$c$;

-- A scenario's overrides are settings too, for the experiments running in it: the same rule.
CREATE OR REPLACE FUNCTION reco.assert_scenario_change_allowed(p_tenant_id int, p_scenario text, p_old jsonb,
                                                               p_new jsonb)
RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    _why text;
BEGIN
    SELECT string_agg(format('"%s" reads %s', x.name, x.keys), '; ' ORDER BY x.name) INTO _why
    FROM (SELECT e.name, string_agg(k.key, ', ' ORDER BY k.key) AS keys
          FROM reco.experiments e
          CROSS JOIN (SELECT o.key FROM jsonb_object_keys(coalesce(p_old, '{}') || coalesce(p_new, '{}')) AS o(key)
                      WHERE p_old -> o.key IS DISTINCT FROM p_new -> o.key) AS k
          WHERE e.tenant_id = p_tenant_id AND e.scenario = p_scenario AND e.status = 'running'
            AND EXISTS (SELECT 1 FROM reco.experiment_variants v
                        WHERE v.experiment_id = e.experiment_id AND NOT v.overrides ? k.key)
          GROUP BY e.name) AS x;
    IF _why IS NOT NULL AND coalesce(current_setting('reco.settings_force', true), '') = '' THEN
        RAISE EXCEPTION 'scenario change refused: running experiment %', _why
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('The scenario''s overrides are what the control of an experiment in "%s" serves. Stop the '
                                'experiment first, or force it with a reason: BEGIN; SELECT '
                                'reco.force_settings_change(''why''); <the change>; COMMIT;', p_scenario);
    END IF;
END $$;
COMMENT ON FUNCTION reco.assert_scenario_change_allowed(int, text, jsonb, jsonb) IS
$c$raise object_not_in_prerequisite_state when changing a scenario's overrides from p_old to p_new changes a key that
an arm of an experiment running in that scenario serves (a variant without its own override), unless
reco.force_settings_change was called in this transaction. reco.upsert_scenario calls it. Example:
SELECT reco.assert_scenario_change_allowed(reco._tenant_id('default'), 'home', '{}', '{"mmr_lambda": 0.8}');$c$;
