-- What an analyst (reco_analyst, one tenant under row-level security) could learn about other tenants from the
-- server's statistics, closed where PostgreSQL lets it be closed. docs/hardening.md lists what cannot be.
-- Applied after 095_security.sql, re-applied with every sql/ file (idempotent).
--
-- Closed: the cumulative statistics views and the functions under them (pg_stat_*_tables, pg_statio_*,
-- pg_stat_*_indexes, pg_stat_database: live and dead rows, inserts, scans per table, i.e. every tenant's
-- activity) and the relation size functions. They are revoked from PUBLIC in this database and granted to
-- pg_read_all_stats (monitoring) and to the owner (reco's jobs read pg_stat_user_tables); superusers keep them.
-- Needs a superuser (the catalog's owner) to run `reco migrate`: otherwise a WARNING names what to run.
-- Not closable (see docs/hardening.md): EXPLAIN ANALYZE's "Rows Removed by Filter" (row-level security filters
-- other tenants' rows in the scan, and EXPLAIN reports how many), and pg_class.reltuples / relpages (the
-- planner's estimate of a whole table, which psql and BI tools read).

DO $stats$
DECLARE
    _views text[] := '{pg_stat_all_tables,pg_stat_user_tables,pg_stat_sys_tables,pg_stat_xact_all_tables,
                       pg_stat_xact_user_tables,pg_stat_xact_sys_tables,pg_statio_all_tables,pg_statio_user_tables,
                       pg_statio_sys_tables,pg_stat_all_indexes,pg_stat_user_indexes,pg_stat_sys_indexes,
                       pg_statio_all_indexes,pg_statio_user_indexes,pg_statio_sys_indexes,pg_statio_all_sequences,
                       pg_statio_user_sequences,pg_stat_database}';
    _f record;
    _v text;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE WARNING 'statistics of other tenants stay readable by analysts: % is not a superuser', current_user
            USING HINT = 'Have a superuser run `reco migrate` once (sql/096_statistics_privacy.sql revokes '
                         'pg_stat_*_tables and the pg_stat_get_* functions from PUBLIC).';
        RETURN;
    END IF;
    FOREACH _v IN ARRAY _views LOOP
        CONTINUE WHEN to_regclass('pg_catalog.' || _v) IS NULL;
        EXECUTE format('REVOKE SELECT ON pg_catalog.%I FROM PUBLIC', _v);
        EXECUTE format('GRANT SELECT ON pg_catalog.%I TO pg_read_all_stats, %I', _v, current_user);
    END LOOP;
    -- the functions the views are made of (callable directly with any table's oid)
    FOR _f IN SELECT p.oid::regprocedure AS fn FROM pg_proc p
              WHERE p.pronamespace = 'pg_catalog'::regnamespace
                AND (p.proname ~ '^pg_stat_get_(xact_)?(numscans|lastscan|tuples_|live_tuples|dead_tuples|blocks_|ins_since|mod_since|last_|vacuum_count|autovacuum_count|analyze_count|autoanalyze_count|total_)'
                     OR p.proname ~ '^pg_stat_get_db_'
                     OR p.proname IN ('pg_relation_size', 'pg_total_relation_size', 'pg_table_size', 'pg_indexes_size',
                                      'pg_database_size'))
              ORDER BY 1 LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', _f.fn);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO pg_read_all_stats, %I', _f.fn, current_user);
    END LOOP;
END $stats$;
