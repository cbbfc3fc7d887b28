-- Documentation of the tables for analysts (\d+ in psql, BI tools). Repeatable, so the
-- words can follow the code without a versioned migration.

COMMENT ON SCHEMA reco IS 'pgreco: a recommender inside PostgreSQL (tables, jobs, serving functions)';

COMMENT ON TABLE reco.tenants IS 'one row per customer of pgreco; every other table leads with tenant_id';
COMMENT ON COLUMN reco.tenants.slug IS 'the tenant''s name in function calls (p_tenant) and the reco.tenant setting';
COMMENT ON COLUMN reco.tenants.decay_epoch IS
    't0 of the interaction time decay: weights are stored relative to it; set from the tenant''s first events and rebased by the maintenance job';

COMMENT ON TABLE reco.users IS 'end users of the product; created by upsert_users or on their first event (cold users)';
COMMENT ON COLUMN reco.users.user_key IS 'internal surrogate key (compact joins); user_id is the external id';
COMMENT ON COLUMN reco.users.user_id IS 'external user id, as the client knows it';
COMMENT ON COLUMN reco.users.paid IS 'on a paid plan: paid-only features are recommended only to paid users';
COMMENT ON COLUMN reco.users.attributes IS 'segment attributes (industry, usage_band, company_size, ...), see setting segment_attributes';

COMMENT ON TABLE reco.features IS 'the catalog: the things recommended (product features, articles, SKUs, ...)';
COMMENT ON COLUMN reco.features.feature_key IS 'internal surrogate key; feature_id is the external id';
COMMENT ON COLUMN reco.features.requires_paid IS 'only available on paid plans';
COMMENT ON COLUMN reco.features.active IS 'inactive features are never recommended and their events are rejected';
COMMENT ON COLUMN reco.features.embedding IS 'optional client-supplied vector; preferred over the content embedding';

COMMENT ON TABLE reco.plans IS 'pricing plans, for reco.recommend_plan';
COMMENT ON COLUMN reco.plans.price IS 'price per month';
COMMENT ON COLUMN reco.plans.quota IS 'uses included per month; NULL = unlimited';
COMMENT ON COLUMN reco.plans.overage_price IS 'price per use beyond the quota; NULL = no overage (the plan does not fit)';
COMMENT ON COLUMN reco.plans.includes_paid_features IS 'paid-only features are available on this plan';

COMMENT ON TABLE reco.events IS
    'raw usage events, partitioned by month of occurred_at (reco.events_YYYY_MM, created as data arrives)';
COMMENT ON COLUMN reco.events.event_id IS
    'the client''s idempotency key; when absent, ''h:'' + md5 of user, feature, kind and time';
COMMENT ON COLUMN reco.events.kind IS 'event kind (default use); weighted by setting kind_weights';
COMMENT ON COLUMN reco.events.success IS 'did the use succeed (NULL: unknown)';

COMMENT ON TABLE reco.event_ids IS 'every event_id ever accepted, per tenant: makes ingest idempotent across partitions';

COMMENT ON TABLE reco.interactions IS
    'the user x feature matrix R, updated on every ingest in the same transaction';
COMMENT ON COLUMN reco.interactions.weight IS
    'Σ kind_weight · exp((t - t0)/τ) · (1 + γ·success) over the pair''s events; relative to tenants.decay_epoch';
COMMENT ON COLUMN reco.interactions.uses IS 'number of events';
COMMENT ON COLUMN reco.interactions.successes IS 'events with success = true';
COMMENT ON COLUMN reco.interactions.failures IS 'events with success = false';
COMMENT ON COLUMN reco.interactions.first_at IS 'first event: when the user adopted the feature';

COMMENT ON TABLE reco.setting_definitions IS 'every setting with its documented default and meaning';
COMMENT ON TABLE reco.settings IS 'per-tenant overrides of settings (reco.set_setting); read on every call';
COMMENT ON TABLE reco.sql_files IS 'checksums of the applied sql/ files (repeatable migrations, reco migrate)';

-- engine (jobs write these; the serving functions read them)
COMMENT ON TABLE reco.feature_neighbors IS
    'S(j, i) of the neighbour model (setting neighbor_model: cosine, rp3beta, ease) as rows: for each feature i its neighbors_k most similar features j (source cf; a source keeps at most min(5·K, max(100, 2·K)) rows), and content neighbours for little-used features (source content). Serving sums strength(u, j)·score over the rows of the user''s features j';
COMMENT ON COLUMN reco.feature_neighbors.rank IS 'rank of the row among the rows of its feature_key, by score: 1 = strongest';
COMMENT ON TABLE reco.neighbor_weights IS
    'staging: neighbour weights computed in Python (EASE, jobs/ease.py) that the feature_neighbors job moves into reco.feature_neighbors';
COMMENT ON TABLE reco.job_queue IS
    'work a job left for Python when pg_cron ran it (EASE, SVD factors: numpy); `reco jobs loop` runs the job again, a full run removes the row';
COMMENT ON COLUMN reco.job_queue.reason IS 'what the job did without Python and what it left (the message of its deferred run)';
COMMENT ON COLUMN reco.job_queue.requested_at IS 'when a run first left this work; the loop runs the oldest first';
COMMENT ON COLUMN reco.feature_factors.computed_at IS 'when the factors were computed (a run that reuses older SVD factors names this time)';
COMMENT ON TABLE reco.segments IS 'segments (attribute = value, and * = * for everyone) with their number of users';
COMMENT ON TABLE reco.feature_stats IS
    'per segment and feature: users, uses, successes, failures, popularity = users / segment users, success_rate (Laplace)';
COMMENT ON TABLE reco.cohort_priors IS
    'P(feature | attribute = value) = (users of the feature in the segment + 1) / (segment users + 2)';
COMMENT ON TABLE reco.feature_embeddings IS
    'content vector per feature: the client vector (folded to 64 dims) or a hashing-trick embedding of category, tags, paid flag and description';
COMMENT ON TABLE reco.feature_factors IS
    'projection of each feature into the 64-dim user-vector space: one-hot (exact, ≤ 64 features), SVD (numpy) or random';
COMMENT ON TABLE reco.user_vectors IS
    'one row per user with interactions, rebuilt by the embeddings job: the vector for nearest-user search and the user''s row of R; partitioned by tenant (user_vectors_<tenant_id>), each partition with its own HNSW index';
COMMENT ON COLUMN reco.user_vectors.embedding IS
    'normalise(Σ strength · feature factor): the exact normalised row of R when the catalog fits 64 dims (HNSW, cosine)';
COMMENT ON COLUMN reco.user_vectors.feature_keys IS
    'the features of the user''s row of R, as of the job (UserCF reads the nearest users'' rows here)';
COMMENT ON COLUMN reco.user_vectors.strengths IS
    'R(user, feature) = sqrt(weight / the user''s largest weight), aligned with feature_keys';
COMMENT ON TABLE reco.usercf_scores IS
    'UserCF per user as of the embeddings job: Σ sim(u, v)·R(v, i) over the user_neighbors nearest users (HNSW) who used something the user has not; partitioned by tenant like reco.user_vectors. Users without a row are searched when asked for';
COMMENT ON TABLE reco.exposures IS
    'what was shown: one row per request (request id, user, the features in rank order, segment, experiment variant, when) and the features used within bandit_window after it; reco.exposure_items has one row per feature';
COMMENT ON TABLE reco.bandit_arms IS
    'Thompson-sampling Beta(alpha, beta) counters per segment and feature: alpha - 1 = exposures followed by a use, beta - 1 = the others counted so far';
COMMENT ON TABLE reco.bandit_state IS
    'per tenant, how far the bandit job has counted: the exposures shown before counted_before are in reco.bandit_arms';
COMMENT ON TABLE reco.jobs IS 'the job catalog: which function, default cron schedule, order and dependencies';
COMMENT ON TABLE reco.job_runs IS
    'run log of the jobs (like pg_cron''s job_run_details): status running/succeeded/failed/skipped, rows written, message';
COMMENT ON VIEW reco.interaction_strengths IS
    'R as the models read it: sqrt(weight / the user''s largest weight), in (0, 1]';

COMMENT ON COLUMN reco.tenants.evaluation_of IS
    'set for an evaluation scope: the tenant whose leave-one-out copy it holds (made and dropped by reco.evaluate)';
COMMENT ON COLUMN reco.jobs.in_all IS 'whether run_job(''all'') runs this job (the refresh jobs do; evaluate does not)';
COMMENT ON TABLE reco.evaluation_holdouts IS
    'per evaluation scope and held-out user: the feature held out (the one first used most recently; in a second fold the one before it) and when';
COMMENT ON COLUMN reco.evaluation_holdouts.masked_key IS
    'second fold only: the user''s most recent adoption, left out of the scope with all its events (NULL in the first fold)';
COMMENT ON TABLE reco.evaluation_ranks IS
    'per evaluation scope, model and held-out user: the top K recommended (items) and the held-out feature''s rank (hit_rank, NULL = missed); unlogged, transient';
COMMENT ON TABLE reco.evaluation_runs IS
    'every evaluation run: tenant, kind (evaluate or grid), K, users held out, the settings in force, options, when';
COMMENT ON TABLE reco.evaluation_results IS
    'per run and model: HitRate@K, MRR@K, NDCG@K and catalog coverage (share of active features recommended to anyone)';
COMMENT ON COLUMN reco.exposures.feature_keys IS 'the features shown, in rank order';
COMMENT ON COLUMN reco.exposures.shown_at IS 'when it was shown: the time of the insert (clock_timestamp), which the bandit job counts by';
COMMENT ON COLUMN reco.exposures.used_keys IS 'the features of feature_keys the user used within bandit_window after shown_at';
COMMENT ON TABLE reco.api_keys IS
    'REST API keys: the tenant each belongs to, a name, the first 12 characters (prefix) and the SHA-256 of the key (the key itself is not stored), created and revoked';

COMMENT ON TABLE reco.scenarios IS
    'placements (home, onboarding_email, ...): named serving-setting overrides on top of the tenant''s settings; requests name one in options.scenario (?scenario= in REST)';
COMMENT ON TABLE reco.experiments IS
    'A/B tests and interleaving experiments: scenario, status (draft, running, stopped), traffic share, salt, metrics, planned looks; see reco.experiment_list and reco.experiment_report';
COMMENT ON COLUMN reco.experiments.ns_start IS
    'the experiment''s slice of its scenario''s hash space is [ns_start, ns_start + traffic): experiments running in one scenario never share a user';
COMMENT ON COLUMN reco.experiments.salt IS 'seed of the variant hash (reco.bucket(salt, user_id)); the name by default';
COMMENT ON COLUMN reco.experiments.oec IS 'overall evaluation criterion: {metric: weight}, the weighted sum of the metrics'' relative lifts';
COMMENT ON COLUMN reco.experiments.planned_users IS 'users planned in all arms: the sequential monitor''s information fraction is users so far / planned';
COMMENT ON COLUMN reco.experiments.pre_period IS 'the window before a user''s first exposure whose metric values are the CUPED covariate';
COMMENT ON TABLE reco.experiment_variants IS
    'an experiment''s variants in order (position 0 is the control): relative weight and serving-setting overrides';
COMMENT ON TABLE reco.metrics IS
    'tenant-defined experiment metrics: the events of one kind after a user''s first exposure, aggregated as any, count, sum or mean of a numeric props field';
COMMENT ON COLUMN reco.exposures.scenario IS 'the scenario the request named (default: the tenant''s settings)';
COMMENT ON COLUMN reco.exposures.experiment_id IS 'the running experiment the user was in for that scenario (NULL: none)';
COMMENT ON COLUMN reco.exposures.variant IS 'the experiment variant served (NULL outside experiments and for interleaving)';
COMMENT ON COLUMN reco.exposures.sides IS 'interleaving: per feature shown, the side it came from (0: control, 1: treatment)';
COMMENT ON TABLE reco.user_daily_uses IS
    'per user and UTC day: events and events of paid-only features, maintained by ingest; what reco.recommend_plan reads (kept 400 days)';
