"""What a tune reports, stores, shows and applies is one thing: reco.tune_decisions (per stage: chosen,
applied, the fold its gain comes from; the final row: what is served). The component floor: a tune never
serves a hybrid that scores below one of its components alone on its holdout. Every tune is in job_runs."""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb

from tests.helpers import crafted as _crafted

COMPONENTS = ("itemcf", "usercf", "prior", "popularity")


def _effective(conn) -> dict:
    return {r["key"]: r["value"] for r in conn.execute(
        "SELECT key, value FROM reco.effective_settings WHERE tenant = 'default'")}


def _fake_tune(conn, hybrid: list[float], components: dict[str, list[float]]) -> int:
    """A tune's baseline trial made by hand: per-user NDCG@10 of the hybrid and of each component alone
    (the scores a baseline trial leaves), no stage kept anything. Returns the run id."""
    conn.execute("SELECT reco._tune_begin()")
    run = conn.execute("""INSERT INTO reco.evaluation_runs (tenant, kind, k, users, settings, options, started_at)
                          SELECT 'default', 'tune', 10, %s,
                                 (SELECT jsonb_object_agg(d.key, reco.setting(d.key, 1))
                                  FROM reco.setting_definitions d),
                                 '{"tune": "T", "stage": "baseline", "trial": {}}', now()
                          RETURNING run_id""", (len(hybrid),)).fetchone()["run_id"]
    for model, scores in {"hybrid": hybrid, **components}.items():
        conn.execute("""INSERT INTO reco.evaluation_results (run_id, model, users, hit_rate, mrr, ndcg, coverage)
                        VALUES (%s, %s, %s, 0, 0, %s, 0)""", (run, model, len(scores), sum(scores) / len(scores)))
        for user, ndcg in enumerate(scores):
            conn.execute("INSERT INTO _tune_scores (run_id, model, user_key, ndcg) VALUES (%s, %s, %s, %s)",
                         (run, model, user, ndcg))
    return run


def test_a_component_above_the_hybrid_is_served_with_the_weights_that_equal_it(conn):
    before = _effective(conn)
    run = _fake_tune(conn, [0, 0, 1, 0.5], {"itemcf": [1, 0.5, 1, 0.5], "usercf": [0, 0, 1, 0],
                                            "prior": [0, 0, 0, 0], "popularity": [0.5, 0, 0, 0.5]})
    summary = conn.execute("SELECT reco._tune_decide(1, 0, 'T', %s, true, '{}') AS s", (run,)).fetchone()["s"]
    weights = {"weight_itemcf": 1, "weight_usercf": 0, "weight_prior": 0, "weight_popularity": 0}
    assert summary["served"] == "itemcf" and summary["applied"] and summary["settings"] == weights
    assert summary["served_ndcg"] == pytest.approx(0.75) and summary["baseline_ndcg"] == pytest.approx(0.375)
    assert summary["gain"] == pytest.approx(0.375) and summary["fold"] == "holdout"
    assert "itemcf alone" in summary["note"]
    after = _effective(conn)
    assert {k: after[k] for k in weights} == weights
    assert {k: v for k, v in after.items() if k not in weights} == {k: v for k, v in before.items() if k not in weights}
    final = conn.execute("SELECT * FROM reco.tune_decisions WHERE stage = 'final'").fetchone()
    assert final["served"] == "itemcf" and final["applied"] and final["settings"] == weights


def test_a_hybrid_not_below_its_components_keeps_the_settings(conn):
    before = _effective(conn)
    run = _fake_tune(conn, [1, 0.5, 1, 0.5], {c: [1, 0.5, 0, 0.5] for c in COMPONENTS})
    summary = conn.execute("SELECT reco._tune_decide(1, 0, 'T', %s, true, '{}') AS s", (run,)).fetchone()["s"]
    assert summary["served"] == "hybrid" and not summary["applied"] and summary["settings"] == {}
    assert "not below its best component" in summary["note"] and _effective(conn) == before
    message = conn.execute("SELECT reco._tune_message(%s::jsonb) AS m", (Jsonb(summary),)).fetchone()["m"]
    assert "kept the settings" in message and "served the hybrid" in message


def test_the_report_the_trials_the_console_and_the_settings_agree(conn):
    """After a tune: each stage's row says what it chose, on which fold, and whether it is in effect; the
    trials view, the summary, the console and job_runs read the same decision; effective_settings
    holds exactly what was applied; the served hybrid is not below a component in reco.evaluate."""
    _crafted(conn)
    before = _effective(conn)
    summary = conn.execute("SELECT reco.tune() AS r").fetchone()["r"]
    after = _effective(conn)
    applied = summary["settings"] if summary["applied"] else {}
    assert {k: v for k, v in after.items() if before[k] != v} == applied
    stages = conn.execute("SELECT * FROM reco.tune_decisions WHERE tune = %s ORDER BY position",
                          (summary["tune"],)).fetchall()
    assert [s["stage"] for s in stages] == ["model", "tau", "weights", "seen", "mmr", "final"]
    for s in stages[:-1]:
        assert s["fold"] in ("holdout", "holdout+second fold") and s["kept"] in (s["incumbent"], s["best"])
        changed = {k: v for k, v in s["settings"].items() if before[k] != v}
        # applied: what it changed is in effect; not applied: nothing it chose that differs is in effect
        assert s["applied"] == (bool(changed) and all(after[k] == v for k, v in changed.items())), s
    assert [{"stage": s["stage"], "chosen": s["settings"], "applied": s["applied"]} for s in stages[:-1]] == [
        {k: st[k] for k in ("stage", "chosen", "applied")} for st in summary["stages"]]
    trials = conn.execute("SELECT * FROM reco.tune_trials WHERE tune LIKE %s", (summary["tune"] + "%",)).fetchall()
    chosen = [t for t in trials if t["chosen"]]
    assert len(chosen) == 1 and chosen[0]["run_id"] == stages[-1]["kept"]
    assert chosen[0]["applied"] == summary["applied"] and not any(t["applied"] for t in trials if not t["chosen"])
    assert {t["run_id"] for t in trials if t["kept"]} == {s["kept"] for s in stages[:-1]}
    console = conn.execute("SELECT reco.console_evaluations() AS c").fetchone()["c"]
    latest = console["tunes"][0]
    assert latest["tune"] == summary["tune"] and latest["settings"] == summary["settings"]
    assert latest["applied"] == summary["applied"]
    assert float(latest["served_ndcg"]) == pytest.approx(summary["served_ndcg"])
    assert [s["stage"] for s in console["stages"]] == [s["stage"] for s in stages[:-1]]
    run = conn.execute("SELECT status, rows_written, message FROM reco.job_runs WHERE job = 'tune'").fetchall()
    assert run == [{"status": "succeeded", "rows_written": summary["trials"],
                    "message": conn.execute("SELECT reco._tune_message(%s::jsonb) AS m",
                                            (Jsonb(summary),)).fetchone()["m"]}]
    # the component floor, seen by reco.evaluate on the same holdout (every eligible user)
    scores = {r["model"]: r["ndcg"] for r in conn.execute("SELECT * FROM reco.evaluate(10, 0)")}
    assert round(scores["hybrid"], 6) >= max(round(scores[c], 6) for c in COMPONENTS)


def test_every_way_of_starting_a_tune_logs_one_run(db_url, tiny):  # noqa: F811
    from jobs.runner import run_job
    from jobs.tune import tune

    def runs() -> list[dict]:
        return tiny.execute("SELECT status, rows_written FROM reco.job_runs WHERE job = 'tune' ORDER BY run_id"
                            ).fetchall()

    first = tiny.execute("SELECT reco.tune(NULL, NULL, false) AS r").fetchone()["r"]
    assert runs() == [{"status": "succeeded", "rows_written": first["trials"]}]
    result = tune(db_url, None, apply=False)
    assert runs()[1:] == [{"status": "succeeded", "rows_written": result.trials}]
    tiny.execute("CALL reco.run_job('tune')")
    assert len(runs()) == 3  # run_job logs its own run; reco.tune inside it does not log a second
    run_job(db_url, "tune")  # the Python runner: the search in Python, logged once by run_job
    assert len(runs()) == 4 and runs()[-1]["status"] == "succeeded"
