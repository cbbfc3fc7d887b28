-- Bulk import: `reco import` COPYs a CSV file into a staging table (all text columns, one per
-- file column, plus a `line` number) and then merges it in chunks through the same private
-- cores as the JSON functions, so a CSV row and a JSON row are checked the same way.

CREATE OR REPLACE FUNCTION reco._staged_column(p_columns jsonb, p_target text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_columns ? p_target THEN format('s.%I', p_columns ->> p_target) ELSE 'NULL' END
$$;

CREATE OR REPLACE FUNCTION reco.import_staged(p_kind text, p_stage regclass, p_columns jsonb,
                                              p_from bigint, p_to bigint, p_tenant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _row text;
    _rows_sql text;
    _result jsonb;
    c CONSTANT jsonb := p_columns;
BEGIN
    IF jsonb_typeof(p_columns) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'p_columns must map target fields to staging columns'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ''{"user_id": "userId"}''';
    END IF;
    _row := CASE p_kind
        WHEN 'events' THEN format('ROW(s.line, NULL, %s, %s, %s, %s, %s, %s, NULL)::reco.event_input',
            reco._staged_column(c, 'event_id'), reco._staged_column(c, 'user_id'),
            reco._staged_column(c, 'feature_id'), reco._staged_column(c, 'occurred_at'),
            reco._staged_column(c, 'kind'), reco._staged_column(c, 'success'))
        WHEN 'users' THEN format(
            'ROW(s.line, NULL, %s, %s, jsonb_strip_nulls(to_jsonb(s) - %L::text[]))::reco.user_input',
            reco._staged_column(c, 'user_id'), reco._staged_column(c, 'paid'),
            ARRAY['line'] || ARRAY(SELECT v FROM jsonb_each_text(c) AS t(k, v)
                                   WHERE k IN ('user_id', 'paid')))
        WHEN 'features' THEN format(
            'ROW(s.line, NULL, %s, %s, %s, %s, string_to_array(%s, ''|''), %s, %s, NULL)::reco.feature_input',
            reco._staged_column(c, 'feature_id'), reco._staged_column(c, 'name'),
            reco._staged_column(c, 'category'), reco._staged_column(c, 'requires_paid'),
            reco._staged_column(c, 'tags'), reco._staged_column(c, 'description'),
            reco._staged_column(c, 'active'))
        WHEN 'plans' THEN format('ROW(s.line, NULL, %s, %s, %s, %s, %s, %s, %s)::reco.plan_input',
            reco._staged_column(c, 'plan_id'), reco._staged_column(c, 'name'),
            reco._staged_column(c, 'price'), reco._staged_column(c, 'quota'),
            reco._staged_column(c, 'overage_price'), reco._staged_column(c, 'includes_paid_features'),
            reco._staged_column(c, 'active'))
    END;
    IF _row IS NULL THEN
        RAISE EXCEPTION 'unknown import kind "%"', p_kind
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use events, users, features or plans.';
    END IF;
    _rows_sql := format('ARRAY(SELECT %s FROM %s AS s WHERE s.line BETWEEN $1 AND $2)', _row, p_stage);
    EXECUTE format('SELECT reco.%I($3, %s)',
                   CASE p_kind WHEN 'events' THEN '_ingest_event_rows'
                               WHEN 'users' THEN '_upsert_user_rows'
                               WHEN 'features' THEN '_upsert_feature_rows'
                               ELSE '_upsert_plan_rows' END,
                   _rows_sql)
        INTO _result USING p_from, p_to, _tid;
    RETURN _result;
END $$;
COMMENT ON FUNCTION reco.import_staged(text, regclass, jsonb, bigint, bigint, text) IS
$c$merge rows p_from..p_to (column "line") of a staging table filled by COPY into users, features,
plans or events (p_kind). p_columns maps target fields to staging columns, e.g. {"user_id": "userId"};
for users, every unmapped column goes into attributes. Used by `reco import`; returns the ingest report.$c$;

CREATE OR REPLACE FUNCTION reco.analyze_imported(p_kind text)
RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    _tables text[] := CASE p_kind
        -- events also add users (first seen) and interactions; reco.events ANALYZEs its partitions too
        WHEN 'events' THEN ARRAY['reco.interactions', 'reco.users', 'reco.events', 'reco.event_ids']
        WHEN 'users' THEN ARRAY['reco.users']
        WHEN 'features' THEN ARRAY['reco.features']
        WHEN 'plans' THEN ARRAY['reco.plans']
    END;
    _table text;
BEGIN
    IF _tables IS NULL THEN
        RAISE EXCEPTION 'unknown import kind "%"', p_kind
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use events, users, features or plans.';
    END IF;
    FOREACH _table IN ARRAY _tables LOOP
        EXECUTE format('ANALYZE %s', _table::regclass);
    END LOOP;
    RETURN _tables;
END $$;
COMMENT ON FUNCTION reco.analyze_imported(text) IS
$c$ANALYZE the tables an import of p_kind (events, users, features, plans) wrote, so that the next
query (the first jobs after a bulk import) is planned on statistics that include the new rows, not on
those of the empty tables autovacuum saw last. `reco import` calls it at the end; returns the tables.$c$;
