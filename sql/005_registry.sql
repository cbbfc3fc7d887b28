-- Named constants: one name, one place. The advisory-lock keys, the size of the user vectors and
-- the scoring components, which other files read from here instead of repeating a literal.
-- Repeatable: re-applied by `reco migrate` whenever a file in sql/ changes.
--
-- Sync contract: reco.lock_key equals jobs/locks.py (LOCK_KEYS), reco.vector_dims() equals
-- jobs/svd.py (DIM) and the vector(N) columns of migrations 0002/0004, reco.components() equals
-- jobs/components.py; tests/test_registry.py fails when they differ.

-- ---------------------------------------------------------------------------------------
-- Advisory locks
-- ---------------------------------------------------------------------------------------

-- Every advisory lock pgreco takes. One-key locks use the key as a bigint; two-key locks take the
-- key as the first int and a tenant id or hashtext(...) as the second.
CREATE OR REPLACE FUNCTION reco.lock_key(p_name text)
RETURNS int
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    _key int := CASE p_name
        WHEN 'migrate' THEN 7281001           -- one `reco migrate` at a time (app/migrate.py), one key
        WHEN 'event_partitions' THEN 7281002  -- creators of reco.events partitions, one key
        WHEN 'job' THEN 7281100               -- one run per job and tenant: (key, hashtext(job || ':' || tenant id))
        WHEN 'exposures' THEN 7281200         -- exposure writers (shared) against the bandit job's count: (key, tenant)
        WHEN 'ingest' THEN 7281201            -- ingest (shared) against erasure and the bandit counts: (key, tenant)
        WHEN 'experiment_start' THEN 7281300  -- one experiment start per scenario: (key, hashtext(tenant/scenario))
        WHEN 'import_stage' THEN 7281400      -- a live import's staging table: (key, hashtext(table name))
        WHEN 'churn_models' THEN 7281101      -- churn model versions registered/activated one at a time: (key, tenant)
        WHEN 'retention_list' THEN 7281500    -- one retention list drawn at a time: (key, tenant)
    END;
BEGIN
    IF _key IS NULL THEN
        RAISE EXCEPTION 'unknown advisory lock "%"', p_name USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The locks: SELECT * FROM reco.lock_keys().';
    END IF;
    RETURN _key;
END $$;
COMMENT ON FUNCTION reco.lock_key(text) IS
$c$the advisory-lock key of a named lock (the registry of every advisory lock pgreco takes; jobs/locks.py holds
the same numbers for Python), or invalid_parameter_value for an unknown name. Two-key locks take it as the first
key. Example:
SELECT pg_locks.* FROM pg_locks WHERE locktype = 'advisory' AND classid = reco.lock_key('job');$c$;

CREATE OR REPLACE FUNCTION reco.lock_keys()
RETURNS TABLE (name text, key int)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT n, reco.lock_key(n)
    FROM unnest('{migrate,event_partitions,job,exposures,ingest,experiment_start,import_stage,churn_models,retention_list}'::text[]) AS n
$$;
COMMENT ON FUNCTION reco.lock_keys() IS
$c$every named advisory lock and its key (reco.lock_key). Example:
SELECT * FROM reco.lock_keys();$c$;

-- ---------------------------------------------------------------------------------------
-- The user-vector space
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.vector_dims()
RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 64
$$;
COMMENT ON FUNCTION reco.vector_dims() IS
$c$the dimensions of the user vectors, feature factors and content embeddings (the vector(N) columns of
reco.feature_content, reco.feature_factors and reco.user_vectors; jobs/svd.py's DIM). A catalog up to this many
active features gets exact one-hot factors, a larger one SVD (numpy) or SQL factors. Example:
SELECT reco.vector_dims();  -- 64$c$;

-- ---------------------------------------------------------------------------------------
-- Scoring components
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION reco.components()
RETURNS TABLE (name text, "position" int, tuned boolean, description text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT * FROM (VALUES
        ('itemcf', 1, true, 'ItemCF: Σ R(u,j)·S(j,i) over the features the user used'),
        ('usercf', 2, true, 'UserCF: Σ sim(u,v)·R(v,i) over the user''s nearest users'),
        ('prior', 3, true, 'the cohort prior of the user''s segment'),
        ('popularity', 4, true, 'popularity in the tenant'),
        ('session', 5, false, 'the features of the request''s recent context (options.recent)'),
        ('explore', 6, false, 'Thompson sampling of the segment''s bandit arms')
    ) AS c(name, "position", tuned, description)
$$;
COMMENT ON FUNCTION reco.components() IS
$c$the scoring components of the hybrid ranking, in order: each has a setting weight_<name> and an
options.weights key; tuned: measured alone by the offline evaluation and weighted by the tune (session and explore
depend on the live request). jobs/components.py holds the same list for Python. Example:
SELECT name FROM reco.components() WHERE tuned;$c$;

-- The component names, in order, as an array (what the checks and the evaluation read).
CREATE OR REPLACE FUNCTION reco._component_names(p_tuned_only boolean DEFAULT false)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(c.name ORDER BY c."position") FROM reco.components() AS c WHERE c.tuned OR NOT p_tuned_only
$$;
COMMENT ON FUNCTION reco._component_names(boolean) IS
    'internal: the names of reco.components() in order (the tuned ones only when p_tuned_only)';
