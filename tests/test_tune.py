"""The tune job on a crafted data set whose answer is known: each user's next feature follows the
feature they used most recently, while an older feature they used many times points elsewhere. A
long decay τ (365 days, the tenant's setting here) lets the old repeated feature win; a short one
(3 or 14 days) ranks the right feature first. The tuner must find that, say by how much, apply it
(from SQL, as pg_cron runs it) or only report it (apply false), and record every trial."""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb

from tests.helpers import CRAFTED_NOISE as NOISE  # noqa: F401
from tests.helpers import CRAFTED_PAIRS as PAIRS  # noqa: F401
from tests.helpers import crafted as _crafted
from tests.helpers import wait_for


def _trials(conn) -> list[dict]:
    return conn.execute("SELECT * FROM reco.tune_trials ORDER BY run_id").fetchall()


def test_tune_job_from_sql_finds_the_short_decay_and_applies_it(conn):
    _crafted(conn)
    conn.execute("CALL reco.run_job('tune')")
    run = conn.execute("SELECT status, message, rows_written FROM reco.job_runs WHERE job = 'tune'").fetchone()
    # as pg_cron runs it: everything but EASE (numpy), which is left for `reco jobs loop`
    assert run["status"] == "deferred" and "EASE" in run["message"] and "applied" in run["message"]
    assert conn.execute("SELECT job FROM reco.job_queue").fetchall() == [{"job": "tune"}]
    tau = conn.execute("SELECT reco.setting('decay_tau_days', 1) AS v").fetchone()["v"]
    assert tau in (3, 14)
    trials = _trials(conn)
    plan = conn.execute("""SELECT count(*) AS n FROM unnest(reco._tune_stages()) AS s
                           CROSS JOIN LATERAL reco._tune_plan(s) AS c
                           WHERE NOT reco._tune_needs_python(c)""").fetchone()["n"]
    # the baseline, the plan and the floor trial (the tuned configuration with each component alone)
    assert len(trials) == 1 + plan + 1 == run["rows_written"]
    assert not any(t["trial"].get("neighbor_model") == "ease" for t in trials)
    chosen = [t for t in trials if t["chosen"]]
    assert len(chosen) == 1 and chosen[0]["applied"] and chosen[0]["gain"] > 2 * chosen[0]["se"] > 0
    baseline = trials[0]
    assert baseline["stage"] == "baseline" and float(chosen[0]["ndcg"]) > float(baseline["ndcg"]) + 0.1
    # the interactions were rebuilt with the new τ: the old repeated feature no longer outweighs
    w = conn.execute("""SELECT f.feature_id, i.weight FROM reco.interactions i
                        JOIN reco.users u USING (tenant_id, user_key)
                        JOIN reco.features f USING (tenant_id, feature_key)
                        WHERE u.user_id = 'S0' ORDER BY i.weight DESC""").fetchall()
    assert w[0]["feature_id"] in ("A0", "B0")


def test_tune_from_python_tries_ease_and_only_reports_without_apply(db_url, conn):
    from jobs.tune import tune

    _crafted(conn)
    result = tune(db_url, None, apply=False)
    assert not result.applied and result.settings.get("decay_tau_days") in (3, 14)
    assert conn.execute("SELECT reco.setting('decay_tau_days', 1) AS v").fetchone()["v"] == 365
    trials = _trials(conn)
    planned = conn.execute("SELECT count(*) AS n FROM reco._tune_plan('model') AS c "
                           "WHERE c ->> 'neighbor_model' = 'ease'").fetchone()["n"]
    assert planned == 6 and sum(t["trial"].get("neighbor_model") == "ease" for t in trials) == planned
    # one inverse per λ (250, 500) on the holdout, whatever the K; a close call measured again on the
    # second fold adds that fold's (at most two more), where each trial used to compute its own
    assert 2 <= result.ease_inverses <= 4
    assert result.trials == len(trials) and result.summary["skipped"] == []
    assert "would apply" in result.message


def test_tune_on_a_tenant_without_eligible_users(conn):
    assert conn.execute("SELECT reco.tune() AS r").fetchone()["r"]["message"].startswith("no eligible users")


@pytest.mark.parametrize("stage", ["model", "tau", "weights", "seen", "mmr"])
def test_every_stage_has_candidates(conn, stage):
    assert conn.execute("SELECT count(*) AS n FROM reco._tune_plan(%s)", (stage,)).fetchone()["n"] >= 2


def test_pg_cron_runs_the_tune_job(cron_db):
    """pg_cron runs CALL reco.run_job('tune'): the SQL search applies the short τ, the EASE trials
    are left for `reco jobs loop` (the run is logged deferred, the job queued)."""
    cron_db.execute("SELECT reco.drop_tenant(slug) FROM reco.tenants WHERE slug = 'crontune'")
    cron_db.execute("SELECT reco.create_tenant('crontune')")
    _crafted(cron_db, "crontune")
    last = cron_db.execute("SELECT coalesce(max(run_id), 0) AS id FROM reco.job_runs").fetchone()["id"]
    cron_db.execute("UPDATE reco.jobs SET schedule = '* * * * *' WHERE name = 'tune'")
    cron_db.execute("SELECT * FROM reco.schedule_jobs()")
    run = wait_for(lambda: cron_db.execute(  # the next minute, and the search
        """SELECT status, message FROM reco.job_runs
           WHERE job = 'tune' AND tenant = 'crontune' AND status <> 'running' AND run_id > %s""",
        (last,)).fetchone(), what="pg_cron to run the tune job")
    cron_db.execute("SELECT reco.unschedule_jobs()")
    assert run is not None and run["status"] == "deferred" and "EASE" in run["message"], run
    assert cron_db.execute("SELECT reco.setting('decay_tau_days', reco._tenant_id('crontune')) AS v"
                           ).fetchone()["v"] in (3, 14)
    assert cron_db.execute("""SELECT count(*) AS n FROM reco.job_queue q JOIN reco.tenants t USING (tenant_id)
                              WHERE t.slug = 'crontune' AND q.job = 'tune'""").fetchone()["n"] == 1
    cron_db.execute("SELECT reco.drop_tenant('crontune')")


def test_a_tenant_on_ease_is_tuned_from_its_real_baseline(db_url, conn):
    """The baseline of a tenant that serves EASE is measured with its EASE weights, so it equals the
    model-stage trial with the same settings: from Python (numpy) and, on this 40-feature catalog, from
    SQL too (SQL inverts catalogs of at most 64 features; above, it refuses and the job defers:
    tests/test_evaluation_provenance.py)."""
    from jobs.runner import run_job
    from jobs.tune import tune

    _crafted(conn)
    for key, value in {"neighbor_model": "ease", "neighbors_k": 50, "ease_lambda": 250}.items():
        conn.execute("SELECT reco.set_setting(%s, %s)", (key, Jsonb(value)))
    run_job(db_url, "feature_neighbors")
    sql = conn.execute("SELECT reco.tune(NULL, NULL, false) AS r").fetchone()["r"]
    tune(db_url, None, apply=False)
    trials = _trials(conn)
    baselines = [t for t in trials if t["stage"] == "baseline"]
    same = [t for t in trials if t["trial"] == {"neighbor_model": "ease", "neighbors_k": 50, "ease_lambda": 250}]
    assert len(baselines) == 2 and baselines[0]["tune"] == sql["tune"]
    assert baselines[0]["ndcg"] == baselines[1]["ndcg"]  # SQL's EASE and numpy's rank alike
    assert len(same) == 1 and same[0]["ndcg"] == baselines[1]["ndcg"]


def test_an_inconclusive_stage_is_measured_again_on_a_second_fold(conn):
    """With a bar no gain can pass (tune_min_gain 1000), every stage whose best gains is
    inconclusive: the incumbent and the best are ranked again on the second fold, the decision is
    taken on the gain pooled per user over both folds (recorded on the best trial), and the fold's
    scope is dropped at the end."""
    _crafted(conn)
    conn.execute("SELECT reco.set_setting('tune_min_gain', '1000')")
    result = conn.execute("SELECT reco.tune() AS r").fetchone()["r"]
    assert not result["applied"] and result["confirmations"] >= 2
    confirms = [t for t in _trials(conn) if t["stage"] == "confirm"]
    assert len(confirms) == result["confirmations"] and len(confirms) % 2 == 0
    assert all(t["tune"] == result["tune"] + "/fold1" for t in confirms)
    # every user adopted three features: the second fold holds out the one before the latest of all
    # of them (a student's A_k, a teacher's B_k)
    assert all(t["users"] == 250 for t in confirms)
    # the stages decided on the pooled gain say so (reco.tune_decisions: the one record of decisions)
    pooled = conn.execute("""SELECT * FROM reco.tune_decisions
                             WHERE fold = 'holdout+second fold' AND tune = %s""", (result["tune"],)).fetchall()
    assert len(pooled) == len(confirms) // 2
    assert all(p["kept"] == p["incumbent"] != p["best"] for p in pooled)
    assert conn.execute("SELECT count(*) AS n FROM reco.tenants WHERE evaluation_of IS NOT NULL").fetchone()["n"] == 0


def test_the_gain_is_pooled_per_user_over_the_folds(conn):
    conn.execute("SELECT reco._tune_begin()")
    # fold A: runs 1 -> 2 for users 1, 2, 3; fold B: runs 3 -> 4 for users 1 and 2 only
    conn.execute("""INSERT INTO _tune_scores (run_id, user_key, ndcg) VALUES
                    (1, 1, 0.0), (1, 2, 0.5), (1, 3, 0.2), (2, 1, 1.0), (2, 2, 0.5), (2, 3, 0.0),
                    (3, 1, 0.0), (3, 2, 0.0), (4, 1, 0.0), (4, 2, 0.4)""")
    one = conn.execute("SELECT * FROM reco._tune_gain(1, 2)").fetchone()
    diffs = [1.0, 0.0, -0.2]
    mean = sum(diffs) / 3
    se = (sum((d - mean) ** 2 for d in diffs) / 2) ** 0.5 / 3 ** 0.5
    assert one["gain"] == pytest.approx(mean) and one["se"] == pytest.approx(se) and one["users"] == 3
    both = conn.execute("SELECT * FROM reco._tune_gain('{1,3}'::bigint[], '{2,4}'::bigint[])").fetchone()
    diffs = [(1.0 + 0.0) / 2, (0.0 + 0.4) / 2, -0.2]  # each user's mean over the folds that hold them
    mean = sum(diffs) / 3
    se = (sum((d - mean) ** 2 for d in diffs) / 2) ** 0.5 / 3 ** 0.5
    assert both["gain"] == pytest.approx(mean) and both["se"] == pytest.approx(se) and both["users"] == 3


def test_the_loop_runs_the_queued_tune_with_ease_and_logs_its_inverses(db_url, conn):
    """The search pg_cron leaves for Python: `reco jobs loop` runs it, EASE trials included, and the
    job's log says what EASE cost (one inverse per λ and holdout, not one per trial)."""
    from jobs.runner import loop

    _crafted(conn)
    conn.execute("CALL reco.run_job('tune')")
    assert conn.execute("SELECT job FROM reco.job_queue").fetchall() == [{"job": "tune"}]
    mark = conn.execute("SELECT max(run_id) AS id FROM reco.job_runs").fetchone()["id"]
    loop(db_url, stop_after=5, log=lambda line: None)
    run = conn.execute("SELECT status, message FROM reco.job_runs WHERE job = 'tune' AND run_id > %s",
                       (mark,)).fetchone()
    assert run is not None and run["status"] == "succeeded", run
    assert "EASE: " in run["message"] and " inverse(s)" in run["message"], run["message"]
    assert conn.execute("SELECT count(*) AS n FROM reco.job_queue").fetchone()["n"] == 0
    trials = _trials(conn)
    assert sum(t["trial"].get("neighbor_model") == "ease" for t in trials) == 6
