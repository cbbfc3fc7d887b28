-- Churn, part 3: monitoring (placeholder, filled below)
CREATE OR REPLACE FUNCTION reco._churn_retrain_check(p_tenant_id int)
RETURNS text
LANGUAGE sql STABLE AS $$ SELECT NULL::text $$;
COMMENT ON FUNCTION reco._churn_retrain_check(int) IS 'internal: placeholder';
