"""The in-database recommender on hand-computed data: jobs and serving functions."""

from __future__ import annotations

import math

import psycopg
import psycopg.sql
import pytest
from psycopg.types.json import Jsonb

from tests.helpers import DAY, PATIENT, ingest, recommend, wait_for


def test_jobs_log_their_runs(world):
    runs = world.execute("SELECT job, status, rows_written FROM reco.job_runs ORDER BY run_id").fetchall()
    assert [r["job"] for r in runs] == ["maintenance", "feature_stats", "cohort_priors", "feature_neighbors",
                                        "embeddings", "bandit"]
    assert all(r["status"] == "succeeded" for r in runs)


def test_itemcf_cosine(world):
    rows = world.execute("""
        SELECT f.feature_id AS f, g.feature_id AS g, n.score, n.source FROM reco.feature_neighbors n
        JOIN reco.features f ON f.tenant_id = n.tenant_id AND f.feature_key = n.feature_key
        JOIN reco.features g ON g.tenant_id = n.tenant_id AND g.feature_key = n.neighbor_key
        WHERE n.source = 'cf'""").fetchall()
    score = {(r["f"], r["g"]): r["score"] for r in rows}
    # columns of R: a = (U1, U2, U3), b = (U1, U2), c = (U2), d = (U4, U5), p = (U5)
    assert score[("a", "b")] == pytest.approx(2 / math.sqrt(3 * 2))
    assert score[("a", "c")] == pytest.approx(1 / math.sqrt(3 * 1))
    assert score[("b", "c")] == pytest.approx(1 / math.sqrt(2 * 1))
    assert score[("d", "p")] == pytest.approx(1 / math.sqrt(2 * 1))
    assert ("a", "d") not in score  # never used together
    assert ("a", "e") not in score  # inactive features are never neighbours


def test_cohort_priors_are_laplace_smoothed(world):
    rows = world.execute("""
        SELECT cp.value, f.feature_id, cp.prob FROM reco.cohort_priors cp
        JOIN reco.features f USING (tenant_id, feature_key) WHERE cp.attribute = 'industry'""").fetchall()
    prob = {(r["value"], r["feature_id"]): r["prob"] for r in rows}
    # retail: U1, U2, U6 (3 users); media: U3, U4, U5
    assert prob[("retail", "a")] == pytest.approx((2 + 1) / (3 + 2))
    assert prob[("retail", "c")] == pytest.approx((1 + 1) / (3 + 2))
    assert prob[("retail", "d")] == pytest.approx((0 + 1) / (3 + 2))
    assert prob[("media", "d")] == pytest.approx((2 + 1) / (3 + 2))


def test_usercf_from_nearest_users(conn):
    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb(
        [{"feature_id": f, "category": f"c{f}"} for f in "abcd"]),))
    # U1 = (a, b); U2 = (a, b, c): cosine 2/sqrt(2·3); U4 = (b, d): cosine 1/2;
    # U3 = (a): cosine 1/sqrt(2), but it used nothing U1 has not: not a neighbour worth reading
    ingest(conn, [("U1", "a"), ("U1", "b"), ("U2", "a"), ("U2", "b"), ("U2", "c"), ("U3", "a"),
                  ("U4", "b"), ("U4", "d")])
    conn.execute("CALL reco.run_job('all')")
    sim2, sim4 = 2 / math.sqrt(6), 0.5
    rows = recommend(conn, "U1", 10, {"explore": False, "weights": {
        "itemcf": 0, "usercf": 1, "prior": 0, "popularity": 0, "session": 0}})
    usercf = {r["feature_id"]: r["reasons"]["usercf"] for r in rows}
    # UserCF(i) = Σ sim(U1, v)·R(v, i) over the features U1 has not used (U3 not counted),
    # normalised by the largest candidate (c: sim2)
    assert usercf["c"] == pytest.approx(1.0, abs=1e-4)
    assert usercf["d"] == pytest.approx(sim4 / sim2, abs=1e-4)
    assert usercf["a"] == usercf["b"] == 0  # U1's own: seen, not scored by UserCF

    # the job computed it (one search per user); a user whose first events came after the job
    # is searched when asked for, with the same result
    stored = conn.execute("""SELECT c.feature_keys FROM reco.usercf_scores c
                             JOIN reco.users u USING (tenant_id, user_key) WHERE u.user_id = 'U1'""").fetchone()
    assert stored is not None and len(stored["feature_keys"]) == 2
    conn.execute("DELETE FROM reco.usercf_scores "
                 "WHERE user_key = (SELECT user_key FROM reco.users WHERE user_id = 'U1')")
    online = recommend(conn, "U1", 10, {"explore": False, "weights": {
        "itemcf": 0, "usercf": 1, "prior": 0, "popularity": 0, "session": 0}})
    assert {r["feature_id"]: r["reasons"]["usercf"] for r in online} == usercf


def test_thompson_draws_follow_the_beta_posterior(conn):
    draws = [r["x"] for r in conn.execute(
        "SELECT reco.beta_sample(3, 7) AS x FROM generate_series(1, 4000)").fetchall()]
    mean = sum(draws) / len(draws)
    var = sum((x - mean) ** 2 for x in draws) / len(draws)
    assert all(0 < x < 1 for x in draws)
    assert mean == pytest.approx(0.3, abs=0.015)            # α / (α + β)
    assert var == pytest.approx(21 / (100 * 11), rel=0.15)  # αβ / ((α + β)²(α + β + 1))


def test_seen_features_are_down_weighted_or_excluded(world):
    rows = recommend(world, "U1", options={"explore": False})
    by_id = {r["feature_id"]: r for r in rows}
    assert by_id["a"]["reasons"]["seen"] and by_id["b"]["reasons"]["seen"]
    assert not by_id["c"]["reasons"]["seen"]
    assert rows[0]["feature_id"] == "c"  # the unseen neighbour of U1's features wins
    assert by_id["c"]["reasons"]["because"][0] in ("a", "b")
    excluded = recommend(world, "U1", options={"explore": False, "exclude_seen": True})
    assert {"a", "b"}.isdisjoint(r["feature_id"] for r in excluded)


def test_paid_and_inactive_features_are_filtered(world):
    free = {r["feature_id"] for r in recommend(world, "U4", options={"explore": False})}
    assert "p" not in free and "e" not in free
    paid = {r["feature_id"] for r in recommend(world, "U5", options={"explore": False})}
    assert "p" in paid and "e" not in paid


def test_mmr_reorders_by_category(world):
    # popularity alone: a (3 users), b (2), c (1), d (2 users, but p's user...) -> use counts below
    opts = {"explore": False, "weights": {"itemcf": 0, "usercf": 0, "prior": 0, "session": 0,
                                          "popularity": 1}}
    # global popularity over 6 users (success unknown: same factor): a 3, b 2, d 2, c 1
    world.execute("SELECT reco.set_setting('mmr_lambda', '1.0')")
    plain = [r["feature_id"] for r in recommend(world, "nobody", 4, opts)]
    assert plain == ["a", "b", "d", "c"]
    # λ = 0.5: b (second of x) scores 0.5·2/3 - 0.5 < d (first of y) 0.5·2/3
    world.execute("SELECT reco.set_setting('mmr_lambda', '0.5')")
    diverse = [r["feature_id"] for r in recommend(world, "nobody", 4, opts)]
    assert diverse == ["a", "d", "b", "c"]


def test_cold_start_paths(world):
    # a user id never seen: popularity + exploration, global segment
    cold = recommend(world, "never-seen", 3)
    assert len(cold) == 3
    assert all(r["reasons"]["segment"] == "*=*" and "explore" in r["reasons"] for r in cold)
    # popularity is all it has: its weight is renormalised to carry the whole score
    plain = recommend(world, "never-seen", 3, {"explore": False})
    assert plain[0]["reasons"]["popularity"] == 1.0 and plain[0]["score"] == pytest.approx(1.0)
    # attributes, no events: the cohort prior of the segment
    u6 = recommend(world, "U6", 3, {"explore": False})
    assert u6[0]["reasons"]["segment"] == "industry=retail"
    assert u6[0]["reasons"]["prior"] > 0 and u6[0]["feature_id"] == "a"
    # one event: ItemCF from it, and exploration
    one = recommend(world, "U3", 3)
    assert "explore" in one[0]["reasons"]
    assert any(r["reasons"].get("because") == ["a"] for r in one)
    # a feature added today, before any job: content neighbours, not an empty list
    world.execute("""SELECT reco.upsert_features('[{"feature_id": "a2", "category": "x", "tags": ["alpha"]}]')""")
    similar = world.execute("SELECT * FROM reco.similar_features('a2', 3)").fetchall()
    assert similar and all(r["source"] == "content" for r in similar)
    assert similar[0]["feature_id"] in ("a", "b", "c")


def test_starter_set_has_distinct_categories(world):
    # a free user: only x and y hold free features, so two categories first, then a repeat
    rows = world.execute("SELECT * FROM reco.starter_features('U6', 3)").fetchall()
    assert [r["reasons"]["category"] for r in rows][:2] in (["x", "y"], ["y", "x"])
    # a paid newcomer can get x, y and z
    world.execute("""SELECT reco.upsert_users('[{"user_id": "U7", "paid": true}]')""")
    rows = world.execute("SELECT * FROM reco.starter_features('U7', 3)").fetchall()
    assert sorted(r["reasons"]["category"] for r in rows) == ["x", "y", "z"]


def test_session_boost_from_recent(world):
    opts = {"explore": False, "recent": ["d"],
            "weights": {"itemcf": 0, "usercf": 0, "prior": 0, "popularity": 0, "session": 1}}
    rows = recommend(world, "U6", 2, opts)
    assert rows[0]["feature_id"] == "p" or rows[0]["reasons"]["session"] > 0


def test_bad_input_raises_with_hint(world):
    for k in (0, 101):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
            recommend(world, "U1", k)
        assert exc.value.diag.message_hint
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        recommend(world, "U1", 5, {"bogus": 1})
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        recommend(world, "U1", 5, {"exclude_seen": "yes"})
    with pytest.raises(psycopg.errors.NoDataFound) as exc:
        world.execute("SELECT * FROM reco.similar_features('no-such-feature')")
    assert "upsert_features" in exc.value.diag.message_hint


def test_read_path_writes_nothing(world):
    with world.transaction():
        world.execute("SET TRANSACTION READ ONLY")
        assert recommend(world, "U1", 3)
        world.execute("SELECT * FROM reco.starter_features('new-user')").fetchall()
        world.execute("SELECT * FROM reco.similar_features('a')").fetchall()
        world.execute("SELECT * FROM reco.recommend_plan('U1')").fetchall()


def test_recommend_plan_respects_paid_features(world):
    world.execute("""SELECT reco.upsert_plans('[
        {"plan_id": "free", "price": 0, "quota": 100},
        {"plan_id": "pro", "price": 20, "quota": 1000, "includes_paid_features": true},
        {"plan_id": "tiny", "price": 5, "quota": 0, "overage_price": 1, "includes_paid_features": true}]')""")
    # two uses of the paid-only feature in the last 30 days
    world.execute("""SELECT reco.ingest_events(jsonb_build_array(
        jsonb_build_object('event_id', 'r1', 'user_id', 'U5', 'feature_id', 'p', 'occurred_at', now()::text),
        jsonb_build_object('event_id', 'r2', 'user_id', 'U5', 'feature_id', 'p', 'occurred_at', now()::text)))""")
    rows = world.execute("SELECT * FROM reco.recommend_plan('U5')").fetchall()
    by_id = {r["plan_id"]: r for r in rows}
    assert not by_id["free"]["fits"]
    assert by_id["free"]["reasons"]["why_not"] == "does not include paid-only features"
    # 2 uses in 30 days: tiny = 5 + 2 x 1 = 7 < pro 20
    assert [r["plan_id"] for r in rows][:2] == ["tiny", "pro"]
    assert by_id["tiny"]["expected_monthly_cost"] == 7


def test_concurrent_run_is_skipped(world, db_url):
    tid = world.execute("SELECT tenant_id FROM reco.tenants WHERE slug = 'default'").fetchone()["tenant_id"]
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(reco.lock_key('job'), hashtext(%s))", (f"feature_stats:{tid}",))
        world.execute("CALL reco.run_job('feature_stats')")
        last = world.execute("SELECT status, message FROM reco.job_runs ORDER BY run_id DESC LIMIT 1").fetchone()
        assert last["status"] == "skipped"
        # released here, not by closing: a closed connection's backend may hold it a moment longer
        other.execute("SELECT pg_advisory_unlock(reco.lock_key('job'), hashtext(%s))", (f"feature_stats:{tid}",))
    world.execute("CALL reco.run_job('feature_stats')")
    last = world.execute("SELECT status FROM reco.job_runs ORDER BY run_id DESC LIMIT 1").fetchone()
    assert last["status"] == "succeeded"


def test_unknown_job_and_missing_pg_cron(world):
    with pytest.raises(psycopg.errors.NoDataFound):
        world.execute("CALL reco.run_job('nope')")
    has_cron = world.execute("SELECT count(*) AS n FROM pg_extension WHERE extname = 'pg_cron'").fetchone()["n"]
    if has_cron:
        pytest.skip("pg_cron is installed here: see test_pg_cron_schedule")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as exc:
        world.execute("SELECT * FROM reco.schedule_jobs()")
    assert "reco jobs loop" in exc.value.diag.message_hint


def test_pg_cron_schedule(cron_db):
    first = cron_db.execute("SELECT * FROM reco.schedule_jobs()").fetchall()
    assert [r["jobname"] for r in first] == [f"pgreco-{j}" for j in (
        "maintenance", "feature_stats", "cohort_priors", "feature_neighbors", "embeddings", "bandit", "evaluate",
        "tune", "churn_train", "churn_score")]
    cron = cron_db.execute("SELECT jobname, schedule, command FROM cron.job WHERE jobname = 'pgreco-bandit'").fetchone()
    assert cron == {"jobname": "pgreco-bandit", "schedule": "*/10 * * * *", "command": "CALL reco.run_job('bandit')"}
    # re-running updates the same cron jobs (a changed schedule included), never duplicates them
    cron_db.execute("UPDATE reco.jobs SET schedule = '5 * * * *' WHERE name = 'bandit'")
    again = cron_db.execute("SELECT * FROM reco.schedule_jobs()").fetchall()
    assert [r["jobid"] for r in first] == [r["jobid"] for r in again]
    assert cron_db.execute("SELECT count(*) AS n FROM cron.job").fetchone()["n"] == len(first)
    listed = {r["jobname"]: r for r in cron_db.execute("SELECT * FROM reco.scheduled_jobs()").fetchall()}
    assert set(listed) == {r["jobname"] for r in first}
    assert listed["pgreco-bandit"]["schedule"] == "5 * * * *"
    assert cron_db.execute("SELECT reco.unschedule_jobs() AS n").fetchone()["n"] == len(first)
    assert cron_db.execute("SELECT * FROM reco.scheduled_jobs()").fetchall() == []
    assert cron_db.execute("SELECT count(*) AS n FROM cron.job").fetchone()["n"] == 0


def test_pg_cron_runs_a_job(cron_db):
    """pg_cron really runs CALL reco.run_job(...) (a procedure that commits) on its schedule."""
    last = cron_db.execute("SELECT coalesce(max(run_id), 0) AS id FROM reco.job_runs").fetchone()["id"]
    cron_db.execute("UPDATE reco.jobs SET schedule = '* * * * *' WHERE name = 'feature_stats'")
    cron_db.execute("SELECT * FROM reco.schedule_jobs()")
    run = wait_for(lambda: cron_db.execute(  # the next minute, and the run
        "SELECT status FROM reco.job_runs WHERE job = 'feature_stats' AND status <> 'running' AND run_id > %s",
        (last,)).fetchone(), what="pg_cron to run the job")
    details = cron_db.execute(
        """SELECT d.status, d.return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid)
           WHERE j.jobname = 'pgreco-feature_stats' ORDER BY d.runid DESC LIMIT 1""").fetchone()
    assert run == {"status": "succeeded"}, details
    assert details["status"] == "succeeded", details


def test_serving_reads_no_events_or_interactions_by_seq_scan(world):
    """EXPLAIN ANALYZE of every statement inside the serving functions (auto_explain), with the
    planner settings the functions bring themselves: a query no index can answer shows up as a
    sequential scan here, whatever the size of the tables."""
    ingest(world, [("U6", "a")])
    try:
        world.execute("LOAD 'auto_explain'")
    except psycopg.Error:
        pytest.skip("auto_explain cannot be loaded here")
    plans: list[str] = []
    world.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
    for stmt in ("SET auto_explain.log_min_duration = 0", "SET auto_explain.log_nested_statements = on",
                 "SET auto_explain.log_analyze = on", "SET auto_explain.log_level = notice",
                 "SET client_min_messages = notice"):
        world.execute(stmt)
    recommend(world, "U2", 5, {"recent": ["d"]})
    recommend(world, "never-seen", 5)
    recommend(world, "U6", 5)  # first events after the jobs (below): UserCF searched now (HNSW)
    world.execute("SELECT * FROM reco.starter_features('U6')").fetchall()
    world.execute("SELECT * FROM reco.similar_features('a')").fetchall()
    world.execute("SELECT * FROM reco.recommend_plan('U2')").fetchall()
    text = "\n".join(plans)
    assert "Index Scan using user_vectors_" in text and "Index Scan using interactions_pkey" in text
    assert "Index Scan using usercf_scores_" in text
    # ItemCF's neighbour rows and the "because" reasons' sources come from the covering indexes alone
    assert "Index Only Scan using feature_neighbors_rank_covering_idx" in text, text
    assert "Index Only Scan using feature_neighbors_neighbor_covering_idx" in text, text
    for table in ("events", "interactions", "users", "user_vectors", "usercf_scores", "feature_neighbors",
                  "feature_stats", "cohort_priors", "bandit_arms", "features", "feature_factors", "plans"):
        assert f"Seq Scan on {table}" not in text, text
    assert "Seq Scan on events_" not in text, text


def test_feedback_loop_exposure_then_use_moves_the_bandit(world):
    def arm(feature: str) -> dict | None:
        return world.execute("""
            SELECT b.segment, b.alpha, b.beta FROM reco.bandit_arms b
            JOIN reco.features f USING (tenant_id, feature_key) WHERE f.feature_id = %s""", (feature,)).fetchone()

    def use(feature: str, request: str, after: str) -> None:
        shown = world.execute("SELECT shown_at FROM reco.exposures WHERE request_id = %s LIMIT 1",
                              (request,)).fetchone()["shown_at"]
        world.execute("SELECT reco.ingest_events(jsonb_build_array(jsonb_build_object('user_id', 'U6', "
                      "'feature_id', %s::text, 'occurred_at', (%s::timestamptz + %s::interval)::text)))",
                      (feature, shown, after))

    # an exposure is only appended: no arm row is touched (no contention between requests)
    assert world.execute("SELECT reco.log_exposures('req-1', 'U6', ARRAY['c', 'd']) AS n").fetchone()["n"] == 2
    assert arm("c") is None
    # the bandit job counts it as a failure until a use follows
    world.execute("CALL reco.run_job('bandit')")
    assert arm("c") == {"segment": "industry=retail", "alpha": 1, "beta": 2}
    use("c", "req-1", "1 minute")  # a use within bandit_window: the counted failure becomes a success
    assert arm("c") == {"segment": "industry=retail", "alpha": 2, "beta": 1}
    assert arm("d") == {"segment": "industry=retail", "alpha": 1, "beta": 2}
    # shown after the job: not counted yet, so its use only adds a success
    world.execute("SELECT reco.log_exposures('req-2', 'U6', ARRAY['c'])")
    use("c", "req-2", "2 minutes")
    assert arm("c") == {"segment": "industry=retail", "alpha": 3, "beta": 1}
    # exposures without a use stay failures
    world.execute("SELECT reco.log_exposures('req-3', 'U6', ARRAY['d'])")
    world.execute("CALL reco.run_job('bandit')")
    assert arm("d") == {"segment": "industry=retail", "alpha": 1, "beta": 3}
    # the job rebuilds the same counters from the exposures
    world.execute("CALL reco.run_job('bandit')")
    assert arm("c") == {"segment": "industry=retail", "alpha": 3, "beta": 1}


def test_bandit_job_counts_only_new_exposures_and_matches_a_recount(world):
    """The job counts the exposures shown since its last run; with uses (ingest), erasure and
    retention in between, the arms stay what a count of the remaining exposures from scratch gives."""
    def arms() -> dict:  # an arm at (1, 1) is the prior, as good as no row
        return {(r["segment"], r["feature_key"]): (r["alpha"], r["beta"]) for r in world.execute(
            "SELECT segment, feature_key, alpha, beta FROM reco.bandit_arms WHERE tenant_id = reco._tenant_id() "
            "AND (alpha, beta) <> (1, 1)")}

    def log(request: str, user: str, features: list[str]) -> None:
        world.execute("SELECT reco.log_exposures(%s, %s, %s)", (request, user, features))

    def use(user: str, feature: str) -> None:
        world.execute("SELECT reco.ingest_events(jsonb_build_array(jsonb_build_object('user_id', %s::text, "
                      "'feature_id', %s::text, 'occurred_at', (clock_timestamp() + interval '1 second')::text)))",
                      (user, feature))

    def bandit() -> int:
        return world.execute("SELECT reco.job_bandit(reco._tenant_id()) AS n").fetchone()["n"]

    for i, (user, feats) in enumerate([("U1", ["c", "d"]), ("U3", ["b", "c", "d"]), ("U6", ["a", "d"])]):
        log(f"r{i}", user, feats)
    use("U3", "c")                        # a use before the count: alpha now, never a failure
    assert bandit() > 0
    assert bandit() == 0                  # nothing shown since: no arm touched
    use("U1", "d")                        # a counted failure becomes a success
    log("r3", "U1", ["a", "c"])
    log("r4", "U6", ["b"])
    use("U6", "b")                        # shown after the count and used
    assert bandit() == 2                  # r3's two features; r4's only one was used
    log("r5", "U4", ["a", "b", "c"])
    world.execute("SELECT reco.erase_user('U3')")
    assert bandit() == 3
    # retention: exposures older than exposure_retention leave the counts with the rows
    world.execute("UPDATE reco.exposures SET shown_at = shown_at - interval '400 days' WHERE request_id = 'r0'")
    world.execute("CALL reco.run_job('maintenance')")
    assert world.execute("SELECT count(*) AS n FROM reco.exposures WHERE request_id = 'r0'").fetchone()["n"] == 0
    counted = arms()
    before = world.execute("SELECT counted_before FROM reco.bandit_state").fetchone()["counted_before"]
    world.execute("SELECT reco._bandit_arms_from_exposures(reco._tenant_id(), %s)", (before,))
    assert counted == arms() and any(b > 1 for _, b in counted.values()) and any(a > 1 for a, _ in counted.values())


def test_bandit_job_waits_for_exposures_in_flight(world, db_url):
    """An exposure written by a transaction still open when the job starts is counted by this run
    (the job waits for it), not skipped because it commits after the job read the clock."""
    import threading

    world.execute("SELECT reco.job_bandit(reco._tenant_id())")
    with psycopg.connect(db_url) as writer:  # a transaction, left open
        writer.execute("SELECT reco.log_exposures('slow', 'U6', ARRAY['c'])")
        done = []
        job_conn = psycopg.connect(db_url, autocommit=True)

        def run() -> None:
            done.append(job_conn.execute("SELECT reco.job_bandit(reco._tenant_id())").fetchone()[0])

        job = threading.Thread(target=run)
        job.start()
        try:
            # the job's backend waits for the writer's advisory lock (however long it takes to get there)
            wait_for(lambda: world.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s",
                                           (job_conn.info.backend_pid,)).fetchone()["wait_event"] == "advisory",
                     what="the bandit job to wait for the exposure writer")
            assert job.is_alive() and not done
            writer.commit()
            job.join(PATIENT)
        finally:
            job_conn.close()
    assert not job.is_alive() and done == [1]
    arm = world.execute("""SELECT b.alpha, b.beta FROM reco.bandit_arms b
                           JOIN reco.features f USING (tenant_id, feature_key)
                           WHERE f.feature_id = 'c' AND b.segment = 'industry=retail'""").fetchone()
    assert arm == {"alpha": 1, "beta": 2}


def test_catalog_larger_than_the_vector_dimension_gets_svd_factors(conn, db_url):
    """70 active features > 64 dims: `reco jobs run embeddings` writes SVD factors, users get vectors."""
    from jobs.runner import run_job

    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb(
        [{"feature_id": f"f{i}", "category": f"c{i % 7}"} for i in range(70)]),))
    ingest(conn, [(f"U{u}", f"f{(u * 3 + j) % 70}") for u in range(40) for j in range(3)])
    runs = run_job(db_url, "embeddings")
    assert [r["status"] for r in runs] == ["succeeded"]
    methods = conn.execute("SELECT method, count(*) AS n FROM reco.feature_factors GROUP BY 1").fetchall()
    assert methods == [{"method": "svd", "n": 70}]
    assert conn.execute("SELECT count(*) AS n FROM reco.user_vectors").fetchone()["n"] == 40
    # the SQL job alone (pg_cron) keeps the SVD factors
    conn.execute("CALL reco.run_job('embeddings')")
    assert conn.execute("SELECT DISTINCT method FROM reco.feature_factors").fetchone()["method"] == "svd"


def test_tenants_have_their_own_user_vectors(conn):
    """Each tenant's vectors are a partition with its own HNSW index: a job for one tenant leaves
    the other's partition alone, and drop_tenant removes a tenant everywhere."""
    conn.execute("SELECT reco.create_tenant('acme')")
    for tenant in ("default", "acme"):
        conn.execute("SELECT reco.upsert_features(%s, %s)", (Jsonb(
            [{"feature_id": f, "category": "x"} for f in "abcd"]), tenant))
        conn.execute("SELECT reco.ingest_events(%s, %s)", (Jsonb(
            [{"user_id": f"U{u}", "feature_id": "abcd"[(u + j) % 4], "occurred_at": DAY}
             for u in range(30) for j in range(2)]), tenant))
    conn.execute("CALL reco.run_job('all')")
    ids = {r["slug"]: r["tenant_id"] for r in conn.execute("SELECT slug, tenant_id FROM reco.tenants")}
    parts = {r["part"]: r["n"] for r in conn.execute(
        "SELECT tableoid::regclass::text AS part, count(*) AS n FROM reco.user_vectors GROUP BY 1")}
    assert parts == {f"reco.user_vectors_{ids['default']}": 30, f"reco.user_vectors_{ids['acme']}": 30}

    def acme_partition() -> int:
        return conn.execute("SELECT to_regclass(%s)::oid AS oid", (f"reco.user_vectors_{ids['acme']}",)
                            ).fetchone()["oid"]

    before = acme_partition()
    conn.execute("CALL reco.run_job('embeddings', 'default')")
    assert acme_partition() == before
    # nearest users come from the tenant's own partition, as many as asked
    assert len(recommend(conn, "U1", 3)) == 3
    plan = "\n".join(r["QUERY PLAN"] for r in conn.execute(
        "EXPLAIN SELECT user_key FROM reco.user_vectors WHERE tenant_id = %s::int "
        "ORDER BY embedding <=> array_fill(1, ARRAY[64])::vector LIMIT 5", (ids["acme"],)))
    assert f"user_vectors_{ids['acme']}" in plan and f"user_vectors_{ids['default']}" not in plan
    indexes = {r["indexname"]: r["indexdef"] for r in conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (f"user_vectors_{ids['acme']}",))}
    assert "USING hnsw" in indexes[f"user_vectors_{ids['acme']}_embedding_idx"]

    assert conn.execute("SELECT reco.drop_tenant('acme') AS n").fetchone()["n"] > 0
    assert acme_partition() is None
    left = conn.execute("""SELECT (SELECT count(*) FROM reco.users WHERE tenant_id = %(t)s)
                                + (SELECT count(*) FROM reco.interactions WHERE tenant_id = %(t)s)
                                + (SELECT count(*) FROM reco.events WHERE tenant_id = %(t)s)
                                + (SELECT count(*) FROM reco.feature_neighbors WHERE tenant_id = %(t)s) AS n""",
                        {"t": ids["acme"]}).fetchone()["n"]
    assert left == 0
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT reco.drop_tenant('default')")


def test_itemcf_reads_each_features_strongest_rows_within_itemcf_rows(conn):
    """itemcf_rows bounds the neighbour rows a call reads: each of the user's n features gives its
    ceil(itemcf_rows / n) strongest rows (by rank), so the targets reached through weaker rows get
    no ItemCF at all; with the default every row counts."""
    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb(
        [{"feature_id": f, "category": f"c{f}"} for f in "abcdef"]),))
    # X used a and b; a's neighbours: c (3 co-users) before d (1); b's: e (3) before f (1)
    ingest(conn, [("X", "a"), ("X", "b"),
                  *[(u, f) for u in ("P1", "P2", "P3") for f in ("a", "c")], ("P4", "a"), ("P4", "d"),
                  *[(u, f) for u in ("Q1", "Q2", "Q3") for f in ("b", "e")], ("Q4", "b"), ("Q4", "f")])
    conn.execute("SELECT reco.set_setting('neighbor_shrinkage', '0')")
    conn.execute("CALL reco.run_job('all')")
    only_itemcf = {"explore": False, "exclude_seen": True,
                   "weights": {"itemcf": 1, "usercf": 0, "prior": 0, "popularity": 0, "session": 0}}
    everything = {r["feature_id"]: r["reasons"].get("itemcf", 0) for r in recommend(conn, "X", 10, only_itemcf)}
    assert {f for f, s in everything.items() if s > 0} == {"c", "d", "e", "f"}
    conn.execute("SELECT reco.set_setting('itemcf_rows', '2')")  # 2 features: 1 row each
    ranked = conn.execute("""
        SELECT t.feature_id FROM reco.feature_neighbors n
        JOIN reco.features s ON s.tenant_id = n.tenant_id AND s.feature_key = n.feature_key
        JOIN reco.features t ON t.tenant_id = n.tenant_id AND t.feature_key = n.neighbor_key
        WHERE s.feature_id IN ('a', 'b') AND n.rank = 1""").fetchall()
    assert {r["feature_id"] for r in ranked} == {"c", "e"}  # the strongest row of a and of b
    bounded = {r["feature_id"]: r["reasons"].get("itemcf", 0) for r in recommend(conn, "X", 10, only_itemcf)}
    assert {f for f, s in bounded.items() if s > 0} == {"c", "e"}
    # the rows read count as before: the same sums, normalised by the same largest (c or e)
    assert bounded["c"] / bounded["e"] == pytest.approx(everything["c"] / everything["e"], rel=1e-3)
