"""Churn: definitions, features (leak test), labels on a hand-made history, the logistic regression against a
reference optimiser, the jobs, the registry's activate/rollback, the live score and REST."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb

from jobs.churn import ChurnDataError, auc, fit_logistic_z, score, train
from jobs.runner import run_job

TODAY = datetime.now(UTC).date()


def _at(day: date, hour: int = 12) -> str:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).isoformat()


def _features(conn, n: int = 5) -> None:
    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb([{"feature_id": f"f{i}", "name": f"F{i}"}
                                                          for i in range(n)]),))


def _events(conn, rows: list[dict], tenant: str | None = None) -> None:
    for i in range(0, len(rows), 5000):
        r = conn.execute("SELECT reco.ingest_events(%s, %s) AS r", (Jsonb(rows[i:i + 5000]), tenant)).fetchone()["r"]
        assert r["rejected"] == [], r["rejected"][:3]


def planted_history(conn, users: int = 300, days: int = 150, seed: int = 3) -> dict[str, int]:
    """Users who each stop at a random day (some never do); before stopping their activity thins and their
    failures rise. Returns each user's last active day index."""
    rng = random.Random(seed)
    _features(conn)
    rows, stop = [], {}
    start = TODAY - timedelta(days=days)
    for u in range(users):
        first = rng.randrange(0, days // 3)
        last = rng.randrange(first + 10, days + 60)   # beyond days: never stops within the data
        rate = rng.uniform(0.25, 0.8)
        stop[f"u{u}"] = last
        for d in range(first, min(last, days)):
            fade = 1.0 if last - d > 14 else 0.35
            if rng.random() < rate * fade:
                fail = rng.random() < (0.1 if last - d > 14 else 0.5)
                rows.append({"user_id": f"u{u}", "feature_id": f"f{rng.randrange(5)}",
                             "occurred_at": _at(start + timedelta(days=d), rng.randrange(24)),
                             "success": not fail})
    _events(conn, rows)
    return stop


# --------------------------------------------------------------------------------------------
# definitions
# --------------------------------------------------------------------------------------------

def test_settings_are_validated(conn):
    assert conn.execute("SELECT reco.check_setting('churn_payment_kind', '\"purchase\"') AS v").fetchone()["v"] \
        == "purchase"
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="1 to 63 characters"):
        conn.execute("SELECT reco.check_setting('churn_payment_prop', '\"\"')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="between 0 and 1"):
        conn.execute("SELECT reco.set_setting('churn_tier_high', '1.5')")
    neutral = conn.execute("SELECT reco.experiment_neutral_settings() AS n").fetchone()["n"]
    keys = [r["key"] for r in conn.execute("SELECT key FROM reco.setting_definitions WHERE key LIKE 'churn%'")]
    assert len(keys) >= 14 and set(keys) <= set(neutral)


def test_too_short_a_history_gets_a_message_not_a_model(conn):
    _features(conn)
    _events(conn, [{"user_id": f"u{u}", "feature_id": "f0", "occurred_at": _at(TODAY - timedelta(days=d))}
                   for u in range(20) for d in range(1, 20)])
    with pytest.raises(ChurnDataError, match="too short a history") as exc:
        train(conn, "default")
    assert "churn_window_days" in exc.value.hint
    assert conn.execute("SELECT count(*) AS n FROM reco.models").fetchone()["n"] == 0


def test_too_few_churners_gets_a_message_not_a_model(conn):
    # everyone active every day: no churner at all
    _features(conn)
    _events(conn, [{"user_id": f"u{u}", "feature_id": "f0", "occurred_at": _at(TODAY - timedelta(days=d))}
                   for u in range(30) for d in range(1, 80)])
    with pytest.raises(ChurnDataError, match="too few churners"):
        train(conn, "default")
    assert conn.execute("SELECT count(*) AS n FROM reco.models").fetchone()["n"] == 0
    # the job logs it as a failed run with the message (the runner's Python step, then the SQL body)
    with pytest.raises(psycopg.errors.ExternalRoutineException):
        run_job(conn.info.dsn and _url(conn), "churn_train", "default")
    run = conn.execute("SELECT status, message FROM reco.job_runs WHERE job = 'churn_train' "
                       "ORDER BY run_id DESC LIMIT 1").fetchone()
    assert run["status"] == "failed" and "too few churners" in run["message"]


def _url(conn) -> str:
    return psycopg.conninfo.make_conninfo(conn.info.dsn, password=conn.info.password)


# --------------------------------------------------------------------------------------------
# labels and snapshots
# --------------------------------------------------------------------------------------------

def test_labels_on_a_hand_made_history(conn):
    conn.execute("SELECT reco.set_setting('churn_window_days', '5')")
    conn.execute("SELECT reco.set_setting('churn_min_history_days', '2')")
    conn.execute("SELECT reco.set_setting('churn_activity_kinds', '[\"use\"]')")
    _features(conn, 1)
    d0 = date(2026, 3, 1)
    ev = [("stays", 0), ("stays", 3), ("stays", 12),     # active at d0+12: inside [10, 15)
          ("leaves", 0), ("leaves", 9),                  # nothing in [10, 15)
          ("edge_in", 0), ("edge_in", 14),               # d0+14: the window's last day
          ("edge_out", 0), ("edge_out", 15),             # d0+15: just after the window
          ("at_day", 0), ("at_day", 10),                 # as_of itself counts (the day after snapshot day t)
          ("young", 9), ("young", 12),                   # first activity 1 day before as_of: not eligible
          ("payer", 0)]                                  # later only a 'payment': not activity
    rows = [{"user_id": u, "feature_id": "f0", "occurred_at": _at(d0 + timedelta(days=d))} for u, d in ev]
    rows.append({"user_id": "payer", "feature_id": "f0", "kind": "payment",
                 "occurred_at": _at(d0 + timedelta(days=11))})
    rows.append({"user_id": "late", "feature_id": "f0", "occurred_at": _at(d0 + timedelta(days=30))})
    _events(conn, rows)
    got = {r["user_id"]: (r["churned"], r["matured"])
           for r in conn.execute("SELECT * FROM reco.churn_labels('default', %s)", (d0 + timedelta(days=10),))}
    assert got == {"stays": (False, True), "leaves": (True, True), "edge_in": (False, True),
                   "edge_out": (True, True), "at_day": (False, True), "payer": (True, True)}
    # a window reaching past the newest event's day is not matured
    late = conn.execute("SELECT bool_and(NOT matured) AS m FROM reco.churn_labels('default', %s)",
                        (d0 + timedelta(days=26),)).fetchone()
    assert late["m"] is True


def test_snapshots_time_split(conn):
    planted_history(conn, users=60, days=150)
    conn.execute("SELECT reco.set_setting('churn_validation_snapshots', '2')")
    snaps = conn.execute("SELECT as_of, role FROM reco.churn_snapshots('default')").fetchall()
    end = conn.execute("SELECT reco._churn_data_end(1) AS d").fetchone()["d"]
    val = sorted(s["as_of"] for s in snaps if s["role"] == "validation")
    tr = sorted(s["as_of"] for s in snaps if s["role"] == "train")
    assert len(val) == 2 and val[-1] == end - timedelta(days=14) and val[1] - val[0] == timedelta(days=7)
    assert 1 <= len(tr) <= 12 and all(b - a == timedelta(days=7) for a, b in zip(tr, tr[1:], strict=False))
    # every training label window [as_of, as_of + 14) ends by the first validation day: no training label
    # reads an event the validation's features could not see
    assert max(tr) + timedelta(days=14) <= val[0]


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------

def _features_at(conn, day: date) -> dict:
    return {(r["user_id"], r["feature"]): r["value"]
            for r in conn.execute("SELECT * FROM reco.churn_features('default', %s)", (day,))}


def test_features_on_a_hand_made_history(conn):
    conn.execute("SELECT reco.set_setting('churn_min_history_days', '0')")
    _features(conn, 2)
    d = date(2026, 5, 20)  # a Wednesday
    _events(conn, [
        {"user_id": "a", "feature_id": "f0", "occurred_at": _at(d - timedelta(days=40))},
        {"user_id": "a", "feature_id": "f0", "occurred_at": _at(d - timedelta(days=10), 3), "success": False},
        {"user_id": "a", "feature_id": "f1", "occurred_at": _at(d - timedelta(days=2))},
        {"user_id": "a", "feature_id": "f1", "occurred_at": _at(d - timedelta(days=2), 13)},
        {"user_id": "a", "feature_id": "f0", "kind": "payment", "props": {"amount": 12.5},
         "occurred_at": _at(d - timedelta(days=5))},
    ])
    f = _features_at(conn, d)
    assert f[("a", "recency_days")] == pytest.approx(1 + 11 / 24)   # 13:00 two days before 00:00
    assert f[("a", "tenure_days")] == pytest.approx(39.5)
    assert f[("a", "active_days_7")] == 2 and f[("a", "active_days_obs")] == 3 and f[("a", "active_days_total")] == 4
    assert f[("a", "events_obs")] == 4 and f[("a", "events_total")] == 5
    assert f[("a", "distinct_features_obs")] == 2
    assert f[("a", "monetary_total")] == 12.5 and f[("a", "monetary_obs")] == 12.5
    assert f[("a", "night_share")] == pytest.approx(1 / 4)
    names = conn.execute("SELECT reco.churn_feature_names() AS n").fetchone()["n"]
    assert {k[1] for k in f} == set(names)


def _expose(conn, at: str) -> None:
    conn.execute("""INSERT INTO reco.exposures (tenant_id, request_id, user_key, feature_keys, segment, shown_at)
                    SELECT 1, 'r' || user_key || %s, user_key, ARRAY(SELECT feature_key FROM reco.features), '*',
                           %s::timestamptz
                    FROM reco.users""", (at, at))


def test_leak_events_on_or_after_the_day_change_no_feature(conn):
    planted_history(conn, users=80, days=90)
    day = TODAY - timedelta(days=30)
    # exposures an hour before the day: counted, but a use of a shown feature after the day is no click yet
    _expose(conn, _at(day - timedelta(days=1), 23))
    before = _features_at(conn, day)
    assert before and any(v > 0 for (_, f), v in before.items() if f == "exposures_obs")
    # everything a user could do on and after the day: uses, failures, payments, clicks, new exposures
    users = sorted({u for u, _ in before})[:40]
    rng = random.Random(1)
    _events(conn, [{"user_id": u, "feature_id": f"f{rng.randrange(5)}", "success": rng.random() < 0.5,
                    "kind": rng.choice(["use", "payment"]), "props": {"amount": 9},
                    "occurred_at": _at(day + timedelta(days=rng.randrange(0, 25)), rng.randrange(24))}
                   for u in users for _ in range(5)]
                  + [{"user_id": u, "feature_id": "f0", "occurred_at": _at(day, 0)} for u in users])
    _expose(conn, _at(day, 1))
    after = _features_at(conn, day)
    assert after == before
    # and the same events before the day do change them (the test can fail)
    assert _features_at(conn, day + timedelta(days=26)) != before


# --------------------------------------------------------------------------------------------
# the logistic regression against a reference
# --------------------------------------------------------------------------------------------

def test_logistic_fit_matches_a_reference_optimiser():
    from scipy.optimize import minimize

    rng = np.random.default_rng(5)
    z = rng.normal(size=(400, 4))
    y = (rng.random(400) < 1 / (1 + np.exp(-(0.3 + z @ [1.0, -2.0, 0.5, 0.0])))).astype(float)
    l2 = 3.0

    def loss(theta):
        t = theta[0] + z @ theta[1:]
        return float(np.sum(np.logaddexp(0, t) - y * t) + l2 / 2 * np.sum(theta[1:] ** 2))

    ref = minimize(loss, np.zeros(5), method="BFGS", options={"gtol": 1e-10}).x
    b, w = fit_logistic_z(z, y, l2)
    assert b == pytest.approx(ref[0], abs=1e-5)
    assert w == pytest.approx(ref[1:], abs=1e-5)
    # the penalty shrinks: a larger l2 gives smaller coefficients
    assert np.linalg.norm(fit_logistic_z(z, y, 300.0)[1]) < np.linalg.norm(w)


def test_auc_matches_a_reference():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(2)
    y = rng.random(300) < 0.3
    p = np.round(rng.random(300) + 0.3 * y, 2)  # ties included
    u = mannwhitneyu(p[y], p[~y]).statistic
    assert auc(y, p) == pytest.approx(u / (y.sum() * (~y).sum()))


# --------------------------------------------------------------------------------------------
# jobs, registry, live score
# --------------------------------------------------------------------------------------------

def test_train_score_activate_rollback_and_live(conn):
    planted_history(conn, users=300, days=150)
    conn.execute("SELECT reco.set_setting('churn_lightgbm_min_rows', '1000')")
    r = train(conn, "default")
    assert set(r.versions) == {"logistic", "lightgbm"}
    assert r.metrics["logistic"]["auc"] > 0.7, r.metrics   # the planted decay is visible
    models = conn.execute("SELECT * FROM reco.churn_models('default')").fetchall()
    assert [m["version"] for m in models] == [1, 2] and sum(m["active"] for m in models) == 1
    active = next(m for m in models if m["active"])
    assert active["version"] == r.active and active["auc"] == max(m["auc"] for m in models)
    coefs = conn.execute("SELECT count(*) AS n FROM reco.model_coefficients WHERE model_id = "
                         "(SELECT model_id FROM reco.models WHERE kind = 'logistic')").fetchone()["n"]
    assert coefs == len(conn.execute("SELECT reco.churn_feature_names() AS n").fetchone()["n"])

    # the logistic model scores in SQL; the stored score equals the live one
    conn.execute("SELECT reco.activate_model('default', %s)", (r.versions["logistic"],))
    n, day, version, kind = score(conn, "default")
    assert n > 50 and kind == "logistic"
    row = conn.execute("""SELECT u.user_id, s.probability, s.tier, s.reasons FROM reco.churn_scores s
                          JOIN reco.users u USING (tenant_id, user_key)
                          ORDER BY s.probability DESC LIMIT 1""").fetchone()
    live = conn.execute("SELECT * FROM reco.churn_score_live('default', %s, %s)", (row["user_id"], day)).fetchone()
    assert live["probability"] == pytest.approx(row["probability"], rel=1e-9)
    assert live["tier"] == row["tier"] == "high" and live["model_version"] == version
    assert row["reasons"] and row["reasons"][0]["contribution"] >= row["reasons"][-1]["contribution"] > 0
    # the Python model gives the same probabilities as the SQL rows of its coefficients
    # (checked through the REST body below as well)

    # LightGBM scored from Python, with its per-feature contributions as reasons
    conn.execute("SELECT reco.activate_model('default', %s)", (r.versions["lightgbm"],))
    n2, _, v2, k2 = score(conn, "default")
    assert (n2, k2, v2) == (n, "lightgbm", r.versions["lightgbm"])
    assert conn.execute("SELECT count(*) FILTER (WHERE jsonb_array_length(reasons) > 0) AS n "
                        "FROM reco.churn_scores").fetchone()["n"] > 0
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        conn.execute("SELECT reco.churn_score()")
    # under pg_cron (no Python) the LightGBM scoring is deferred to the loop, the old scores kept and said so
    conn.execute("CALL reco.run_job('churn_score', 'default')")
    run = conn.execute("SELECT status, message FROM reco.job_runs WHERE job = 'churn_score' ORDER BY run_id DESC"
                       ).fetchone()
    assert run["status"] == "deferred" and "LightGBM" in run["message"] and str(day) in run["message"]
    runs = run_job(_url(conn), "churn_score", "default")   # the loop's way: Python scores it
    assert runs[-1]["status"] == "succeeded" and runs[-1]["rows_written"] == n
    assert conn.execute("SELECT count(*) AS n FROM reco.job_queue").fetchone()["n"] == 0

    # rollback: back to the version active before, then refused when none was
    back = conn.execute("SELECT reco.rollback_model('default') AS r").fetchone()["r"]
    assert back["version"] == r.versions["logistic"] and back["previous"] == r.versions["lightgbm"]
    if r.versions["logistic"] < r.versions["lightgbm"]:
        first_active = min(r.versions.values())
        assert back["version"] == first_active
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute("SELECT reco.rollback_model('default')")
    with pytest.raises(psycopg.errors.NoDataFound, match="no churn model version 9"):
        conn.execute("SELECT reco.activate_model('default', 9)")
    with pytest.raises(psycopg.errors.NoDataFound, match="unknown user"):
        conn.execute("SELECT * FROM reco.churn_score_live('default', 'nobody')")


def test_jobs_defer_without_python_and_run_from_the_runner(conn):
    planted_history(conn, users=200, days=150)
    # pg_cron's way: no Python step; the run is deferred and queued for `reco jobs loop`
    conn.execute("CALL reco.run_job('churn_train', 'default')")
    run = conn.execute("SELECT status, message FROM reco.job_runs WHERE job = 'churn_train'").fetchone()
    assert run["status"] == "deferred" and "reco jobs loop" in run["message"]
    assert conn.execute("SELECT count(*) AS n FROM reco.job_queue WHERE job = 'churn_train'").fetchone()["n"] == 1
    # the runner (CLI, loop) trains, then the score job scores the logistic model in SQL (pg_cron can)
    runs = run_job(_url(conn), "churn_train", "default")
    assert runs[-1]["status"] == "succeeded" and "activated" in runs[-1]["message"]
    assert conn.execute("SELECT count(*) AS n FROM reco.job_queue").fetchone()["n"] == 0
    conn.execute("SELECT reco.activate_model('default', (SELECT version FROM reco.models WHERE kind = 'logistic'))")
    conn.execute("CALL reco.run_job('churn_score', 'default')")
    run = conn.execute("SELECT status, rows_written, message FROM reco.job_runs WHERE job = 'churn_score' "
                       "ORDER BY run_id DESC LIMIT 1").fetchone()
    assert run["status"] == "succeeded" and run["rows_written"] > 0 and "scored" in run["message"]


def test_rest_user_churn(conn, db_url):
    from tests.helpers import client_for, error

    planted_history(conn, users=120, days=150)
    r = train(conn, "default")
    conn.execute("SELECT reco.activate_model('default', %s)", (r.versions["logistic"],))
    score(conn, "default")
    key = conn.execute("SELECT reco.create_api_key('default', 'churn tests') AS k").fetchone()["k"]
    top = conn.execute("""SELECT u.user_id, s.probability, s.tier, s.as_of FROM reco.churn_scores s
                          JOIN reco.users u USING (tenant_id, user_key)
                          ORDER BY s.probability DESC LIMIT 1""").fetchone()
    with client_for(db_url) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        body = client.get(f"/v1/users/{top['user_id']}/churn").json()
        assert body["probability"] == pytest.approx(top["probability"], abs=1e-4)
        assert (body["tier"], body["as_of"], body["source"]) == (top["tier"], str(top["as_of"]), "scores")
        assert body["model_version"] == r.versions["logistic"] and body["reasons"]
        # no stored score: computed live from the coefficient rows
        conn.execute("DELETE FROM reco.churn_scores")
        live = client.get(f"/v1/users/{top['user_id']}/churn").json()
        assert live["source"] == "live" and live["model_version"] == r.versions["logistic"]
        assert 0 <= live["probability"] <= 1
        assert "unknown user" in error(client.get("/v1/users/nobody/churn"), 404, "not_found")["message"]
        long = client.get(f"/v1/users/{'x' * 201}/churn")
        assert long.status_code == 422 and "user_id" in long.text
        client.headers["Authorization"] = "Bearer nope"
        assert client.get(f"/v1/users/{top['user_id']}/churn").status_code == 401
    # erasure removes the user's scores too
    score(conn, "default")
    erased = conn.execute("SELECT reco.erase_user(%s) AS e", (top["user_id"],)).fetchone()["e"]
    assert erased["churn_scores"] == 1
    assert conn.execute("SELECT count(*) AS n FROM reco.churn_scores s WHERE NOT EXISTS (SELECT 1 FROM reco.users u "
                        "WHERE u.tenant_id = s.tenant_id AND u.user_key = s.user_key)").fetchone()["n"] == 0


def test_monitoring_drift_matured_auc_and_retrain_trigger(conn, db_url):
    from tests.helpers import client_for

    planted_history(conn, users=200, days=150)
    r = train(conn, "default")
    conn.execute("SELECT reco.activate_model('default', %s)", (r.versions["logistic"],))
    end = conn.execute("SELECT reco._churn_data_end(1) AS d").fetchone()["d"]
    # a past scoring day whose labels have matured, then today's: both through the job's SQL scoring
    conn.execute("SELECT reco.churn_score(%s)", (end - timedelta(days=20),))
    conn.execute("CALL reco.run_job('churn_score', 'default')")
    checks = {(c["check_name"], c["subject"]): c for c in conn.execute("SELECT * FROM reco.churn_monitor('default')")}
    assert checks[("score_psi", "probability")]["value"] >= 0
    assert 0 <= checks[("score_ks", "probability")]["value"] <= 1
    matured = checks[("matured_auc", "probability")]
    assert matured["detail"]["as_of"] == str(end - timedelta(days=20)) and matured["value"] > 0.6
    assert ("feature_psi", "recency_days") in checks
    # the stored AUC equals numpy's on the same scores and labels
    rows = conn.execute("""SELECT s.probability, l.churned FROM reco.churn_scores s
                           JOIN reco._churn_labels(1, ARRAY[%s::date]) l USING (as_of, user_key)""",
                        (end - timedelta(days=20),)).fetchall()
    assert matured["value"] == pytest.approx(auc(np.array([x["churned"] for x in rows]),
                                                 np.array([x["probability"] for x in rows])))
    assert conn.execute("SELECT count(*) AS n FROM reco.job_queue").fetchone()["n"] == 0
    # a threshold the drift passes: the next scoring queues churn_train for the loop, and says so
    conn.execute("SELECT reco.set_setting('churn_psi_retrain', '0')")
    conn.execute("CALL reco.run_job('churn_score', 'default')")
    run = conn.execute("SELECT message FROM reco.job_runs WHERE job = 'churn_score' ORDER BY run_id DESC LIMIT 1"
                       ).fetchone()
    assert "retrain queued: score_psi" in run["message"]
    assert conn.execute("SELECT reason FROM reco.job_queue WHERE job = 'churn_train'").fetchone()["reason"]
    with client_for(db_url) as client:
        text = client.get("/metrics").text
    assert "reco_churn_retrain_due{tenant=\"*\"} 1.0" in text and "reco_churn_score_psi" in text


def test_cli_churn(cli_env, conn):
    import json

    from typer.testing import CliRunner

    from app.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["churn", "train"])
    assert res.exit_code == 1 and "no events" in res.output
    planted_history(conn, users=150, days=150)
    res = runner.invoke(app, ["churn", "train"])
    assert res.exit_code == 0, res.output
    assert "validation AUC" in res.output and "(active)" in res.output
    runs = [r["status"] for r in conn.execute(
        "SELECT status FROM reco.job_runs WHERE job = 'churn_train' ORDER BY run_id")]
    assert runs == ["failed", "succeeded"]
    res = runner.invoke(app, ["churn", "models"])
    assert res.exit_code == 0 and "logistic" in res.output
    logistic = conn.execute("SELECT version FROM reco.models WHERE kind = 'logistic'").fetchone()["version"]
    res = runner.invoke(app, ["churn", "activate", str(logistic)])
    assert res.exit_code == 0 and f"active: version {logistic}" in res.output
    res = runner.invoke(app, ["churn", "score"])
    assert res.exit_code == 0 and "users scored" in res.output and "tiers:" in res.output
    user = conn.execute("SELECT u.user_id FROM reco.churn_scores s JOIN reco.users u USING (tenant_id, user_key) "
                        "LIMIT 1").fetchone()["user_id"]
    res = runner.invoke(app, ["churn", "user", user])
    assert res.exit_code == 0 and json.loads(res.stdout)["model_version"] == logistic
    res = runner.invoke(app, ["churn", "score", "--as-of", "yesterday"])
    assert res.exit_code != 0 and "YYYY-MM-DD" in res.output
