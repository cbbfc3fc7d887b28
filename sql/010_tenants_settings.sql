-- Tenants, settings and the small helpers every other file uses.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.

-- ---------------------------------------------------------------------------------------
-- Tenants
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._tenant_id(p_tenant text DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    _slug text := coalesce(p_tenant, nullif(current_setting('reco.tenant', true), ''), 'default');
    _id int;
BEGIN
    SELECT tenant_id INTO _id FROM reco.tenants WHERE slug = _slug;
    IF _id IS NULL AND row_security_active('reco.tenants') AND pg_has_role('reco_analyst', 'MEMBER') THEN
        -- an analyst: row-level security hides every tenant not granted to it, so say that,
        -- and which ones it reads (creating the tenant is not the answer)
        RAISE EXCEPTION 'role "%" sees no tenant "%"', current_user, _slug
            USING ERRCODE = 'no_data_found',
                  HINT = coalesce(
                      (SELECT format('It reads %s: pass one (p_tenant), or SET reco.tenant = %L.',
                                     string_agg(format('%L', slug), ', ' ORDER BY slug), min(slug))
                       FROM reco.tenants WHERE evaluation_of IS NULL),
                      format('It reads no tenant: the owner grants one with reco analysts grant --tenant T %s.',
                             current_user));
    ELSIF _id IS NULL THEN
        RAISE EXCEPTION 'unknown tenant "%"', _slug
            USING ERRCODE = 'no_data_found',
                  HINT = format('Create it with SELECT reco.create_tenant(%L);', _slug);
    END IF;
    RETURN _id;
END $$;
COMMENT ON FUNCTION reco._tenant_id(text) IS
    'internal: tenant id of a slug; NULL means the reco.tenant setting, else ''default''';

CREATE OR REPLACE FUNCTION reco.create_tenant(p_slug text)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    _id int;
BEGIN
    IF p_slug IS NULL OR p_slug !~ '^[a-z0-9][a-z0-9_-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid tenant slug "%"', p_slug
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 1-63 characters: lower-case letters, digits, "_" and "-".';
    END IF;
    INSERT INTO reco.tenants (slug) VALUES (p_slug)
    ON CONFLICT ON CONSTRAINT tenants_slug_key DO NOTHING;
    SELECT tenant_id INTO _id FROM reco.tenants WHERE slug = p_slug;
    RETURN _id;
END $$;
COMMENT ON FUNCTION reco.create_tenant(text) IS
    'create a tenant (idempotent); returns its tenant_id';

-- ---------------------------------------------------------------------------------------
-- drop_tenant: a tenant and everything it owns
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.drop_tenant(p_slug text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_slug);
    _table text;
    _rows bigint;
    _n bigint := 0;
BEGIN
    IF p_slug = 'default' THEN
        RAISE EXCEPTION 'the default tenant cannot be dropped'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Delete its rows instead, or create and use another tenant.';
    END IF;
    -- a killed import's staging table holds raw rows, maybe this tenant's
    PERFORM reco.drop_stale_import_stages();
    -- its evaluation scopes first
    FOR _table IN SELECT slug FROM reco.tenants WHERE evaluation_of = _tid LOOP
        _n := _n + reco.drop_tenant(_table);
    END LOOP;
    FOREACH _table IN ARRAY '{user_vectors,usercf_scores}'::text[] LOOP  -- the tenant's partitions
        EXECUTE format('DROP TABLE IF EXISTS reco.%I', _table || '_' || _tid);
    END LOOP;
    -- every table of the schema that has a tenant_id (partitions through their parent)
    FOR _table IN
        SELECT c.relname FROM pg_class c
        JOIN pg_namespace ns ON ns.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
        WHERE ns.nspname = 'reco' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND c.relname NOT IN ('tenants') AND c.relname NOT LIKE '\_%'
        ORDER BY c.relname
    LOOP
        EXECUTE format('DELETE FROM reco.%I WHERE tenant_id = $1', _table) USING _tid;
        GET DIAGNOSTICS _rows = ROW_COUNT;
        _n := _n + _rows;
    END LOOP;
    -- and the tables keyed by its slug (job_runs, evaluation_runs: a tenant created again under the name
    -- must not show the old one's history)
    FOR _table IN
        SELECT c.relname FROM pg_class c
        JOIN pg_namespace ns ON ns.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant' AND NOT a.attisdropped
        WHERE ns.nspname = 'reco' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND c.relname NOT LIKE '\_%'
          AND NOT EXISTS (SELECT 1 FROM pg_attribute t WHERE t.attrelid = c.oid AND t.attname = 'tenant_id'
                                                         AND NOT t.attisdropped)
        ORDER BY c.relname
    LOOP
        EXECUTE format('DELETE FROM reco.%I WHERE tenant = $1', _table) USING p_slug;
        GET DIAGNOSTICS _rows = ROW_COUNT;
        _n := _n + _rows;
    END LOOP;
    DELETE FROM reco.tenants WHERE tenant_id = _tid;
    RETURN _n;
END $$;
COMMENT ON FUNCTION reco.drop_tenant(text) IS
    'delete a tenant and every row it owns in every reco table, those keyed by its slug included (job_runs, evaluation_runs); not the default tenant; returns the rows deleted';

-- ---------------------------------------------------------------------------------------
-- Settings: documented defaults in reco.setting_definitions, per-tenant overrides in
-- reco.settings. Read on every call, so a change takes effect on the next call.
-- ---------------------------------------------------------------------------------------
--
-- Sync contract: the default of EVERY setting is here (one list per topic, named after the file that
-- reads it); its rule is a row of reco.setting_rules() (sql/011_setting_rules.sql), and docs/settings.md
-- is regenerated from reco.setting_catalog (`reco settings docs`).

-- ingest and decay (sql/020_ingest.sql)
INSERT INTO reco.setting_definitions (key, default_value, description) VALUES
    ('decay_tau_days', '14',
     'time constant τ (days) of the exponential decay of interaction weights; a change applies to new events'),
    ('success_bonus', '0.2',
     'γ: a successful use weighs (1 + γ) times an unsuccessful one in reco.interactions'),
    ('kind_weights', '{"use": 1.0}',
     'weight of each event kind in reco.interactions; kinds not listed weigh 1.0'),
    ('max_future', '"1 hour"',
     'events later than now() + this interval are rejected as "in the future"'),
    ('max_event_age', '"50 years"',
     'events older than now() - this interval are rejected as too old (a stray old timestamp skews the decay and the history)'),
    ('segment_attributes', '["industry", "paid", "usage_band"]',
     'user attributes that define segments (cohort priors, segment popularity, bandits)')
ON CONFLICT (key) DO UPDATE
    SET default_value = excluded.default_value, description = excluded.description;

-- jobs (sql/040_job_bodies.sql)
INSERT INTO reco.setting_definitions (key, default_value, description) VALUES
    ('neighbor_model', '"cosine"',
     'neighbour model of the feature_neighbors job: cosine (SQL), rp3beta (SQL: random walk with popularity penalty) or ease (numpy, catalogs up to ease_max_features)'),
    ('neighbors_k', '20', 'neighbours kept per feature: its K most similar features (a feature''s score for a user sums over its own K neighbours the user used)'),
    ('neighbor_shrinkage', '0', 'cosine × c/(c + shrinkage), c = users of both features: damps similarities seen by few users'),
    ('rp3_alpha', '1.0', 'RP3beta α: exponent of the random walk''s transition probabilities'),
    ('rp3_beta', '0.3', 'RP3beta β: a target''s score is divided by its users^β (popularity penalty)'),
    ('ease_lambda', '250', 'EASE λ: L2 regularisation of the item-item regression (larger = closer to popularity)'),
    ('ease_max_features', '8000', 'EASE is refused above this many features: its numpy step holds ~4 · n² · 8 bytes at the matrix inverse. Measured (`reco bench ease`, 10k users with a median of 135 features, 2 shared cores, timings drift): 4,000 features 11-15 s and 0.47 GiB above the interactions; 6,000: 27 s, 1.05 GiB; 8,000: 54-91 s, 1.9 GiB (process peak 2.1 GiB: well within 4 GiB; 10,000 would need ~3.2 GiB)'),
    ('neighbor_user_items', '0', 'cosine and rp3beta count co-usage over each user''s strongest this many features (largest weight: recent and repeated; degrees still count every feature); 0 = automatic: every feature while the pairs stay within neighbor_pairs_max, else the largest cap that keeps them there. A user adds N·(N-1)/2 pairs, so heavy histories dominate the work: long-tail 10k users × 20k features makes 151M pairs in full (feature_neighbors ~160 s), 43M at 100 (43-48 s); MovieLens-100K makes 9.9M (no cap; a cap of 100 would cost 0.0013 NDCG@10)'),
    ('neighbor_pairs_max', '50000000', 'with neighbor_user_items 0: the most feature pairs (self-join rows, each pair once) the cosine and rp3beta models aggregate, ~1 s per million on one core; above it each user''s features are capped to fit'),
    ('min_feature_users', '5', 'features used by fewer users also get content neighbours (cold features), up to neighbors_k rows'),
    ('bandit_window', '"7 days"', 'a use within this time after an exposure counts as a success for the bandit'),
    ('rebase_after', '50', 'the maintenance job rebases the decay epoch once the newest events weigh more than e^this'),
    ('exposure_retention', '"180 days"', 'the maintenance job deletes exposures older than this'),
    ('hnsw_m', '8', 'links per user vector in the HNSW index (pgvector m, 2-100), used when the embeddings job builds it: fewer make each UserCF search cheaper, more find closer neighbours')
ON CONFLICT (key) DO UPDATE
    SET default_value = excluded.default_value, description = excluded.description;

-- feature factors in SQL (sql/041_sql_factors.sql)
INSERT INTO reco.setting_definitions (key, default_value, description) VALUES
    ('sql_factors_max_features', '20000',
     'above 64 active features and without the Python runner (SVD), the embeddings job computes the feature factors in SQL by subspace iteration up to this many features (its cost grows with features × 64²); above it, a random projection')
ON CONFLICT (key) DO UPDATE
    SET default_value = excluded.default_value, description = excluded.description;

-- serving (sql/050_serving.sql)
INSERT INTO reco.setting_definitions (key, default_value, description) VALUES
    ('weight_itemcf', '0.85', 'weight of ItemCF (Σ R(u,j)·S(j,i) over the features the user used)'),
    ('weight_usercf', '0.1', 'weight of UserCF (Σ sim(u,v)·R(v,i) over the nearest users, HNSW)'),
    ('weight_prior', '0.01', 'weight of the cohort prior (naive Bayes over the user''s segment attributes)'),
    ('weight_popularity', '0.04', 'weight of popularity × (0.5 + 0.5·success rate), segment first'),
    ('weight_session', '0.3', 'weight of the session boost from options.recent'),
    ('weight_explore', '0.1', 'weight of the Thompson-sampling draw for users with few interactions'),
    ('explore_below', '3', 'users with fewer interactions than this get exploration'),
    ('seen_factor', '0.2', 'score multiplier for features the user already uses (0 = never recommend them)'),
    ('mmr_lambda', '1', 'MMR λ: relevance vs. category diversity (1 = no diversity, the default: diversity costs accuracy; the starter set always keeps distinct categories)'),
    ('user_neighbors', '20', 'nearest users whose rows make UserCF'),
    ('hnsw_ef_search', '20', 'candidates each HNSW search for nearest users examines (hnsw.ef_search; at most this many neighbours are found): more finds closer neighbours, costs more (the embeddings job searches once per user)'),
    ('candidates', '20', 'candidates ranked in full: the top by the collaborative signals, plus the top of the segment''s popularity and of each prior: this many of each list, at least 2·k (with exclude_seen, features the user has are not taken)'),
    ('history_limit', '200', 'ItemCF reads the neighbours of the user''s strongest this many features (every feature still counts as seen): bounds the work of a call for heavy users'),
    ('itemcf_rows', '3000', 'ItemCF reads about this many neighbour rows at most: each of the user''s strongest history_limit features gives its strongest itemcf_rows / (their number) rows (all of them for a user with few features): bounds the work of a call for heavy users and large K'),
    ('min_segment_users', '30', 'segment popularity and bandit arms are used when the segment has this many users'),
    ('plan_window_days', '30', 'days of recent usage reco.recommend_plan prices (UTC days, today included; counts are kept 400 days)')
ON CONFLICT (key) DO UPDATE
    SET default_value = excluded.default_value, description = excluded.description;

-- offline evaluation (sql/060_evaluation.sql)
INSERT INTO reco.setting_definitions (key, default_value, description) VALUES
    ('evaluation_users', '20000',
     'users held out by reco.evaluate and the evaluate job when no number is given (0 = every eligible user)')
ON CONFLICT (key) DO UPDATE
    SET default_value = excluded.default_value, description = excluded.description;

-- self-tuning (sql/065_tune.sql)
INSERT INTO reco.setting_definitions (key, default_value, description) VALUES
    ('tune_min_gain', '1',
     'the tune job applies the best trial when its NDCG@10 gain over the current settings exceeds this many standard errors of the per-user paired difference: 1 = more than the noise of the estimate (≈ 84 % one-sided); 2 ≈ 98 %, for tenants that want changes only on strong evidence')
ON CONFLICT (key) DO UPDATE
    SET default_value = excluded.default_value, description = excluded.description;

-- churn definitions, models and monitoring (sql/082_churn_features.sql … 084_churn_monitoring.sql)
INSERT INTO reco.setting_definitions (key, default_value, description) VALUES
    ('churn_window_days', '14',
     'churn label: a user is churned at a snapshot when no activity event falls in the next this many days'),
    ('churn_observation_days', '30',
     'churn features: the recent window the counts and rates read (events, active days, failures, payments, exposures); its last 7 days are compared with the rest for the trends'),
    ('churn_activity_kinds', '[]',
     'event kinds that count as activity for churn (recency, frequency, labels); empty = every kind'),
    ('churn_snapshot_every_days', '7', 'churn training: days between two snapshot days (rolling snapshots)'),
    ('churn_train_snapshots', '12', 'churn training: the most snapshot days trained on (the newest matured before validation)'),
    ('churn_validation_snapshots', '1', 'churn training: the newest matured snapshot days kept for validation (the time split)'),
    ('churn_min_history_days', '7',
     'churn: a user is labelled, trained on and scored only once its first activity is at least this many days old'),
    ('churn_min_churners', '20',
     'churn training is refused (with a message, no model) when training or validation has fewer churners, or fewer retained users, than this'),
    ('churn_tier_high', '0.7', 'churn tier high: probability at or above this'),
    ('churn_tier_medium', '0.4', 'churn tier medium: probability at or above this (and below churn_tier_high); below it, low'),
    ('churn_l2', '1.0', 'churn logistic regression: L2 penalty on the standardised coefficients (the intercept is not penalised)'),
    ('churn_lightgbm_min_rows', '2000',
     'churn training also fits gradient-boosted trees (LightGBM) when the training snapshots hold at least this many rows'),
    ('churn_psi_retrain', '0.25',
     'churn monitoring: a score PSI (training validation vs latest scoring) above this queues churn_train'),
    ('churn_auc_drop_retrain', '0.05',
     'churn monitoring: an AUC on newly matured labels this far below the validation AUC queues churn_train')
ON CONFLICT (key) DO UPDATE
    SET default_value = excluded.default_value, description = excluded.description;

-- churn's monetary value and the retention list (sql/087_retention.sql, sql/088_retention_loop.sql)
INSERT INTO reco.setting_definitions (key, default_value, description) VALUES
    ('churn_payment_kind', '"payment"',
     'the event kind of a payment (monetary value for churn features and the retention list''s value per user)'),
    ('churn_payment_prop', '"amount"',
     'the numeric prop of a payment event that holds the amount'),
    ('retention_value_alpha', '0.6',
     'α: a user''s value in the retention list is α × their payments of the last 30 days'),
    ('retention_value_attribute', '""',
     'a user attribute holding the user''s value for the retention list, used as it is instead of α × payments ("" = payments)'),
    ('retention_holdout', '0.1',
     'the share of each retention list held out (not contacted) to measure the actions'' real win-back rates'),
    ('retention_window_days', '14',
     'days after a retention contact over which the user must come back (an event) to count as retained; the list matures then'),
    ('retention_max_contacts', '2',
     'the most retention contacts a user gets within retention_cap_window'),
    ('retention_cap_window', '"30 days"',
     'the window of the contact cap retention_max_contacts'),
    ('retention_cooldown', '"7 days"',
     'a user contacted by a retention list is not contacted again before this interval has passed'),
    ('retention_alpha', '0.05',
     'significance level at which a measured win-back rate replaces the assumed one in the next list'),
    ('retention_min_held_out', '30',
     'the fewest held-out users of an action and tier before its measured win-back rate may be used'),
    ('retention_qini_min_lists', '3',
     'matured retention lists needed before reco.retention_uplift reports Qini and uplift@k')
ON CONFLICT (key) DO UPDATE
    SET default_value = excluded.default_value, description = excluded.description;

CREATE OR REPLACE FUNCTION reco.setting(p_key text, p_tenant_id int)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(
        (SELECT s.value FROM reco.settings s WHERE s.tenant_id = p_tenant_id AND s.key = p_key),
        (SELECT d.default_value FROM reco.setting_definitions d WHERE d.key = p_key))
$$;
COMMENT ON FUNCTION reco.setting(text, int) IS
    'effective value of a setting for a tenant id: the override, else the documented default';

CREATE OR REPLACE FUNCTION reco.set_setting(p_key text, p_value jsonb, p_tenant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    _tid int := reco._tenant_id(p_tenant);
    _value jsonb := reco.check_setting(p_key, p_value);  -- type, range and unit: sql/011_setting_rules.sql
BEGIN
    INSERT INTO reco.settings (tenant_id, key, value) VALUES (_tid, p_key, _value)
    ON CONFLICT ON CONSTRAINT settings_pkey
        DO UPDATE SET value = excluded.value, updated_at = now();
    RETURN _value;
END $$;
COMMENT ON FUNCTION reco.set_setting(text, jsonb, text) IS
    'override a setting for a tenant (default tenant when NULL), checked by reco.check_setting; returns the value stored (normalised: 50.0 is stored as 50); takes effect on the next call';

CREATE OR REPLACE FUNCTION reco.reset_setting(p_key text, p_tenant text DEFAULT NULL)
RETURNS void
LANGUAGE sql AS $$
    DELETE FROM reco.settings WHERE tenant_id = reco._tenant_id(p_tenant) AND key = p_key
$$;
COMMENT ON FUNCTION reco.reset_setting(text, text) IS
    'drop a tenant''s override so the documented default applies again';

CREATE OR REPLACE VIEW reco.effective_settings AS
SELECT t.slug AS tenant, d.key, coalesce(s.value, d.default_value) AS value,
       s.value IS NULL AS is_default, d.default_value, d.description
FROM reco.tenants t
CROSS JOIN reco.setting_definitions d
LEFT JOIN reco.settings s ON s.tenant_id = t.tenant_id AND s.key = d.key;
COMMENT ON VIEW reco.effective_settings IS
    'every setting of every tenant with the value in force, whether it is the default, and what it means';

-- ---------------------------------------------------------------------------------------
-- Event partitions: one per calendar month (UTC) from 24 months back on, created as data
-- arrives; older events go to reco.events_default. The horizon only moves forward, so a month
-- never has rows in both.
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.partition_horizon()
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE SET TimeZone = 'UTC' AS $$
    SELECT date_trunc('month', now()) - interval '24 months'
$$;
COMMENT ON FUNCTION reco.partition_horizon() IS
    'the first month with a partition of its own in reco.events (24 months back); older events are in reco.events_default';

CREATE OR REPLACE FUNCTION reco.ensure_event_partitions(p_from timestamptz, p_to timestamptz)
RETURNS int
LANGUAGE plpgsql SET TimeZone = 'UTC' AS $$
DECLARE
    _month timestamptz := greatest(date_trunc('month', p_from), reco.partition_horizon());
    _name text;
    _created int := 0;
BEGIN
    IF p_from IS NULL OR p_to IS NULL THEN
        RETURN 0;
    END IF;
    IF p_to - p_from > interval '100 years' THEN
        RAISE EXCEPTION 'refusing to create partitions for % .. %', p_from, p_to
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Check the event times.';
    END IF;
    WHILE _month <= p_to LOOP
        _name := 'events_' || to_char(_month, 'YYYY_MM');
        IF to_regclass('reco.' || _name) IS NULL THEN
            -- Serialise creators. The lock alone is not enough: an advisory lock does not
            -- refresh this session's view of the catalog, so a partition created meanwhile
            -- by another session may still look absent; its CREATE then says duplicate_table.
            PERFORM pg_advisory_xact_lock(reco.lock_key('event_partitions'));
            BEGIN
                EXECUTE format(
                    'CREATE TABLE reco.%I PARTITION OF reco.events FOR VALUES FROM (%L) TO (%L)',
                    _name, _month, _month + interval '1 month');
                EXECUTE format('COMMENT ON TABLE reco.%I IS %L', _name,
                    format('reco.events for %s (UTC)', to_char(_month, 'YYYY-MM')));
                _created := _created + 1;
            EXCEPTION WHEN duplicate_table THEN
                NULL;  -- created by a concurrent session
            END;
        END IF;
        _month := _month + interval '1 month';
    END LOOP;
    RETURN _created;
END $$;
COMMENT ON FUNCTION reco.ensure_event_partitions(timestamptz, timestamptz) IS
    'create the monthly partitions of reco.events covering [p_from, p_to] from the partition horizon on (older months are in events_default); returns how many were new';

-- ---------------------------------------------------------------------------------------
-- Parsing helpers for ingest (text in, typed value or NULL out).
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco._parse_bool(p text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE lower(btrim(p))
        WHEN 'true' THEN true WHEN 't' THEN true WHEN '1' THEN true WHEN 'yes' THEN true
        WHEN 'y' THEN true WHEN 'on' THEN true
        WHEN 'false' THEN false WHEN 'f' THEN false WHEN '0' THEN false WHEN 'no' THEN false
        WHEN 'n' THEN false WHEN 'off' THEN false
    END
$$;

CREATE OR REPLACE FUNCTION reco._parse_number(p text)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN btrim(p) ~ '^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?$' THEN btrim(p)::numeric END
$$;

-- Fast path: epoch seconds or ISO 8601 by pattern. A string that matches the pattern but is
-- not a real date (2024-02-30) raises; callers then fall back to reco._parse_time_safe.
CREATE OR REPLACE FUNCTION reco._parse_time(p text)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p ~ '^\s*[+-]?\d{1,12}(\.\d+)?\s*$' THEN to_timestamp(btrim(p)::float8)
        WHEN p ~ '^\s*\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)?\s*$'
            THEN btrim(p)::timestamptz
    END
$$;

CREATE OR REPLACE FUNCTION reco._parse_time_safe(p text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN reco._parse_time(p);
EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format OR numeric_value_out_of_range
        OR invalid_parameter_value THEN
    RETURN NULL;
END $$;
