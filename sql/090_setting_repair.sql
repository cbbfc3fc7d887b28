-- Stored setting values against today's rules (sql/011_setting_rules.sql): the catalog the docs are made from, and
-- the repair of values stored before a rule existed or changed. Run by every `reco migrate` (the last statement of
-- this file), so a release that narrows a rule mends what it would refuse; each repair is logged in
-- reco.setting_repairs and raised as a WARNING.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

-- Every setting with its rule and default, for documentation (docs/settings.md is generated from it).
CREATE OR REPLACE VIEW reco.setting_catalog AS
SELECT d.key, coalesce(r.kind, jsonb_typeof(d.default_value)) AS kind,
       CASE WHEN r.kind = 'choice' THEN array_to_string(r.choices, ', ') ELSE reco._setting_range(r.lo, r.hi, r.kind) END
           AS allowed,
       r.unit, d.default_value, d.description, d.key = ANY (reco.serving_settings()) AS per_scenario
FROM reco.setting_definitions d
LEFT JOIN reco.setting_rules() AS r ON r.key = d.key;
COMMENT ON VIEW reco.setting_catalog IS
    'every setting: kind, allowed values, unit, default, meaning, and whether scenarios and experiment variants may override it';

-- One repair: logged and warned.
CREATE OR REPLACE FUNCTION reco._log_setting_repair(p_tenant_id int, p_place text, p_key text, p_stored jsonb,
                                                    p_repaired jsonb, p_reason text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO reco.setting_repairs (tenant_id, place, key, stored, repaired, reason)
    VALUES (p_tenant_id, p_place, p_key, p_stored, p_repaired, p_reason);
    RAISE WARNING 'tenant %: % "%" = % %', p_tenant_id, p_place, p_key, left(p_stored::text, 80),
        CASE WHEN p_repaired IS NULL THEN 'dropped (' || p_reason || ')' ELSE 'stored as ' || p_repaired::text END;
END $$;

-- A scenario's or variant's overrides with each value normalised and each one its rule refuses dropped (the
-- request then gets the scenario's or the tenant's value), every change logged.
CREATE OR REPLACE FUNCTION reco._repair_overrides(p_tenant_id int, p_place text, p_overrides jsonb)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _o record;
    _v jsonb;
    _mended jsonb := '{}';
BEGIN
    IF jsonb_typeof(p_overrides) IS DISTINCT FROM 'object' THEN
        PERFORM reco._log_setting_repair(p_tenant_id, p_place, '*', p_overrides, '{}', 'not a JSON object');
        RETURN '{}';
    END IF;
    FOR _o IN SELECT o.key, o.value FROM jsonb_each(p_overrides) AS o ORDER BY o.key LOOP
        BEGIN
            IF _o.key <> ALL (reco.serving_settings()) THEN
                RAISE EXCEPTION '"%" is not a serving setting', _o.key USING ERRCODE = 'invalid_parameter_value';
            END IF;
            _v := reco.check_setting(_o.key, _o.value);
            _mended := _mended || jsonb_build_object(_o.key, _v);
            IF _v::text <> _o.value::text THEN
                PERFORM reco._log_setting_repair(p_tenant_id, p_place, _o.key, _o.value, _v, 'normalised');
            END IF;
        EXCEPTION WHEN invalid_parameter_value THEN
            PERFORM reco._log_setting_repair(p_tenant_id, p_place, _o.key, _o.value, NULL, SQLERRM);
        END;
    END LOOP;
    RETURN _mended;
END $$;

CREATE OR REPLACE FUNCTION reco.repair_stored_settings()
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _before bigint := (SELECT count(*) FROM reco.setting_repairs);
    _r record;
    _v jsonb;
BEGIN
    FOR _r IN SELECT s.tenant_id, s.key, s.value FROM reco.settings s ORDER BY s.tenant_id, s.key LOOP
        BEGIN
            _v := reco.check_setting(_r.key, _r.value);
            CONTINUE WHEN _v::text = _r.value::text;
            UPDATE reco.settings SET value = _v WHERE tenant_id = _r.tenant_id AND key = _r.key;
            PERFORM reco._log_setting_repair(_r.tenant_id, 'setting', _r.key, _r.value, _v, 'normalised');
        EXCEPTION WHEN invalid_parameter_value THEN
            DELETE FROM reco.settings WHERE tenant_id = _r.tenant_id AND key = _r.key;
            PERFORM reco._log_setting_repair(_r.tenant_id, 'setting', _r.key, _r.value, NULL,
                                             SQLERRM || '; the default applies');
        END;
    END LOOP;
    FOR _r IN SELECT s.tenant_id, s.name, s.overrides FROM reco.scenarios s ORDER BY s.tenant_id, s.name LOOP
        _v := reco._repair_overrides(_r.tenant_id, format('scenario %s', _r.name), _r.overrides);
        CONTINUE WHEN _v::text = _r.overrides::text;
        UPDATE reco.scenarios SET overrides = _v WHERE tenant_id = _r.tenant_id AND name = _r.name;
    END LOOP;
    FOR _r IN SELECT v.tenant_id, v.experiment_id, v.position, e.name AS experiment, v.name, v.overrides
              FROM reco.experiment_variants v JOIN reco.experiments e ON e.experiment_id = v.experiment_id
              ORDER BY v.experiment_id, v.position LOOP
        _v := reco._repair_overrides(_r.tenant_id, format('experiment %s variant %s', _r.experiment, _r.name),
                                     _r.overrides);
        CONTINUE WHEN _v::text = _r.overrides::text;
        UPDATE reco.experiment_variants SET overrides = _v
        WHERE experiment_id = _r.experiment_id AND position = _r.position;
    END LOOP;
    FOR _r IN SELECT e.tenant_id, e.experiment_id, e.name, e.pre_period FROM reco.experiments e
              WHERE e.pre_period NOT BETWEEN interval '0' AND interval '366 days' LOOP
        UPDATE reco.experiments SET pre_period = interval '14 days' WHERE experiment_id = _r.experiment_id;
        PERFORM reco._log_setting_repair(_r.tenant_id, format('experiment %s', _r.name), 'pre_period',
                                         to_jsonb(_r.pre_period::text), '"14 days"',
                                         'pre_period must be between 0 and 366 days');
    END LOOP;
    RETURN (SELECT count(*) FROM reco.setting_repairs) - _before;
END $$;
COMMENT ON FUNCTION reco.repair_stored_settings() IS
$c$mend stored values that fail today's rules (reco.setting_rules): an integral number written 50.0 becomes 50; any
other invalid tenant setting is dropped (its default applies), an invalid scenario or variant override is dropped
(the request gets the value beneath it), a pre_period outside 0-366 days becomes 14 days. Each change is logged in
reco.setting_repairs and raised as a WARNING; returns how many. Run by every `reco migrate`. Example:
SELECT reco.repair_stored_settings();  -- 0$c$;

SELECT reco.repair_stored_settings();

COMMENT ON TABLE reco.setting_repairs IS
    'stored setting values that failed their rule when reco.repair_stored_settings ran (at reco migrate): where (setting, scenario, experiment variant), the value stored, what it became (NULL: dropped, the default or the value beneath applies) and why';
