"""Offline evaluation: the leave-one-out split, its isolation from the live tables, the metrics."""

from __future__ import annotations

import json
import math

import psycopg
import pytest
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from tests.helpers import day, features
from tests.helpers import ingest_successes as ingest


def test_rebuild_interactions_matches_ingest(conn):
    features(conn, ["a", "b"])
    conn.execute("SELECT reco.set_setting('kind_weights', '{\"use\": 1.0, \"view\": 0.3}')")
    conn.execute("SELECT reco.ingest_events(%s)", (Jsonb([
        {"user_id": "U1", "feature_id": "a", "occurred_at": day(1), "success": True},
        {"user_id": "U1", "feature_id": "a", "occurred_at": day(3), "success": False},
        {"user_id": "U1", "feature_id": "b", "occurred_at": day(5), "kind": "view"},
        {"user_id": "U2", "feature_id": "b", "occurred_at": day(9, 8)},
    ]),))
    live = """SELECT user_key, feature_key, weight, uses, successes, failures, first_at, last_at
              FROM reco.interactions ORDER BY 1, 2"""
    before = conn.execute(live).fetchall()
    assert conn.execute("SELECT reco.rebuild_interactions() AS n").fetchone()["n"] == 3
    after = conn.execute(live).fetchall()
    for x, y in zip(before, after, strict=True):
        assert x["weight"] == pytest.approx(y["weight"], rel=1e-12)
        assert {**x, "weight": 0} == {**y, "weight": 0}
    # a changed τ applies to the history once rebuilt: weight = kind · exp((t − t0)/τ) · (1 + γ·success)
    conn.execute("SELECT reco.set_setting('decay_tau_days', '1000')")
    conn.execute("SELECT reco.rebuild_interactions()")
    t0 = conn.execute("SELECT decay_epoch FROM reco.tenants WHERE slug = 'default'").fetchone()["decay_epoch"]
    from datetime import datetime

    def at(s: str) -> float:
        return (datetime.fromisoformat(s) - t0).total_seconds() / (1000 * 86400)

    w = {(r["user_id"], r["feature_id"]): r["weight"] for r in conn.execute("""
        SELECT u.user_id, f.feature_id, i.weight FROM reco.interactions i
        JOIN reco.users u USING (tenant_id, user_key) JOIN reco.features f USING (tenant_id, feature_key)""")}
    assert w[("U1", "a")] == pytest.approx(math.exp(at(day(1))) * 1.2 + math.exp(at(day(3))))
    assert w[("U1", "b")] == pytest.approx(0.3 * math.exp(at(day(5))))
    assert w[("U2", "b")] == pytest.approx(math.exp(at(day(9, 8))))


def test_metrics_on_a_hand_computed_split(tiny):
    rows = {r["model"]: r for r in tiny.execute("SELECT * FROM reco.evaluate(3, 0)")}
    assert set(rows) == {"hybrid", "itemcf", "usercf", "prior", "popularity", "baseline", "hybrid_explore"}
    base = rows["baseline"]
    # E1: unseen by popularity p2, p3 (x has no user left): a miss. E2: p1, p3: p1 at rank 1.
    assert base["users"] == 2
    assert base["hit_rate"] == pytest.approx(0.5)
    assert base["mrr"] == pytest.approx(0.5)
    assert base["ndcg"] == pytest.approx(0.5)
    assert base["coverage"] == pytest.approx(3 / 4)  # p1, p2, p3 recommended; x never
    assert tiny.execute("SELECT count(*) AS n FROM reco.evaluation_holdouts").fetchone()["n"] == 0  # dropped


def test_the_split_holds_out_the_last_adoption(tiny):
    tid = tiny.execute("SELECT tenant_id FROM reco.tenants WHERE slug = 'default'").fetchone()["tenant_id"]
    scope = tiny.execute("SELECT reco._evaluation_scope(%s, 0, 'seed') AS id", (tid,)).fetchone()["id"]
    held = {r["user_id"]: r["feature_id"] for r in tiny.execute("""
        SELECT u.user_id, f.feature_id FROM reco.evaluation_holdouts h
        JOIN reco.users u USING (tenant_id, user_key) JOIN reco.features f USING (tenant_id, feature_key)
        WHERE h.tenant_id = %s""", (scope,))}
    assert held == {"E1": "x", "E2": "p1"}  # users with one feature are not held out
    pop = {r["feature_id"]: r["users"] for r in tiny.execute("""
        SELECT f.feature_id, s.users FROM reco.feature_stats s JOIN reco.features f USING (tenant_id, feature_key)
        WHERE s.tenant_id = %s AND s.attribute = '*'""", (scope,))}
    assert pop == {"p1": 7, "p2": 5, "p3": 2}  # from the remaining events only
    # the scope is a tenant of its own: the live rows are untouched, run_job(NULL) skips it
    assert tiny.execute("SELECT count(*) AS n FROM reco.interactions WHERE tenant_id = %s", (tid,)
                        ).fetchone()["n"] == 16
    tiny.execute("CALL reco.run_job('bandit')")
    tenants = {r["tenant"] for r in tiny.execute("SELECT tenant FROM reco.job_runs WHERE job = 'bandit'")}
    assert tenants == {"default"}
    tiny.execute("SELECT reco.drop_tenant(slug) FROM reco.tenants WHERE tenant_id = %s", (scope,))


def test_the_second_fold_holds_out_the_adoption_before_the_latest(conn):
    features(conn, ["a", "b", "c", "d"])
    # U1 adopted a, b, c (c last, used twice); U2 only a and d: too few for the second fold
    ingest(conn, [("U1", "a", day(1)), ("U1", "b", day(2)), ("U1", "c", day(3)), ("U1", "c", day(4)),
                  ("U1", "a", day(5)), ("U2", "a", day(1)), ("U2", "d", day(2))])
    tid = conn.execute("SELECT tenant_id FROM reco.tenants WHERE slug = 'default'").fetchone()["tenant_id"]
    scope = conn.execute("SELECT reco._evaluation_scope(%s, 0, 'seed', '{}', true, 1) AS id", (tid,)).fetchone()["id"]
    held = conn.execute("""
        SELECT u.user_id, f.feature_id, m.feature_id AS masked FROM reco.evaluation_holdouts h
        JOIN reco.users u USING (tenant_id, user_key) JOIN reco.features f USING (tenant_id, feature_key)
        JOIN reco.features m ON m.tenant_id = h.tenant_id AND m.feature_key = h.masked_key
        WHERE h.tenant_id = %s""", (scope,)).fetchall()
    assert [(r["user_id"], r["feature_id"], r["masked"]) for r in held] == [("U1", "b", "c")]
    # the scope's U1 keeps a only (both of its events); c is gone with its events, b is held out
    rows = conn.execute("""SELECT u.user_id, f.feature_id, i.uses FROM reco.interactions i
                           JOIN reco.users u USING (tenant_id, user_key)
                           JOIN reco.features f USING (tenant_id, feature_key)
                           WHERE i.tenant_id = %s ORDER BY 1, 2""", (scope,)).fetchall()
    assert [(r["user_id"], r["feature_id"], r["uses"]) for r in rows] == [
        ("U1", "a", 2), ("U2", "a", 1), ("U2", "d", 1)]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="fold must be 0 or 1"):
        conn.execute("SELECT reco._evaluation_scope(%s, 0, 'seed', '{}', true, 2)", (tid,))


def test_evaluation_finds_nothing_it_could_only_get_by_peeking(conn):
    """Every use of 'secret' is a held-out event: each of its users adopted it last. A model that
    saw a held-out event would rank it first (it always comes with a, b, c); without a leak no
    component has any evidence for it, and the live tables are untouched."""
    features(conn, ["a", "b", "c", "secret"] + [f"f{i}" for i in range(8)])
    events = []
    for u in range(40):
        events += [(f"G{u}", f, day(d)) for d, f in ((1, "a"), (2, "b"), (3, "c"), (10, "secret"))]
    for u in range(60):  # other users: a or b, then f_i and f_i+4 (i = 0..3) ...
        events += [(f"O{u}", "ab"[u % 2], day(1)), (f"O{u}", f"f{u % 4}", day(2)),
                   (f"O{u}", f"f{u % 4 + 4}", day(4))]
    for u in range(40):  # ... which others use in the other order: a real, findable signal
        events += [(f"K{u}", f"f{u % 4 + 4}", day(1)), (f"K{u}", f"f{u % 4}", day(2)), (f"K{u}", "c", day(5))]
    ingest(conn, events)
    conn.execute("CALL reco.run_job('all')")
    # peeking would find it: live, secret is among the closest neighbours of a (with b and c)
    assert "secret" in {r["feature_id"] for r in conn.execute("SELECT feature_id FROM reco.similar_features('a', 3)")}
    live = conn.execute("""SELECT (SELECT count(*) FROM reco.interactions) AS i,
                                  (SELECT count(*) FROM reco.feature_neighbors) AS n,
                                  (SELECT sum(weight) FROM reco.interactions) AS w,
                                  (SELECT count(*) FROM reco.user_vectors) AS v""").fetchone()

    tid = conn.execute("SELECT tenant_id FROM reco.tenants WHERE slug = 'default'").fetchone()["tenant_id"]
    scope = conn.execute("SELECT reco._evaluation_scope(%s, 0, 'seed') AS id", (tid,)).fetchone()["id"]
    secret = conn.execute("SELECT feature_key FROM reco.features WHERE tenant_id = %s AND feature_id = 'secret'",
                          (scope,)).fetchone()["feature_key"]
    held = conn.execute("""SELECT count(*) AS n FROM reco.evaluation_holdouts h
                           JOIN reco.users u USING (tenant_id, user_key)
                           WHERE h.tenant_id = %s AND u.user_id LIKE 'G%%' AND h.feature_key = %s""",
                        (scope, secret)).fetchone()["n"]
    assert held == 40  # every use of secret is held out
    assert conn.execute("SELECT count(*) AS n FROM reco.interactions WHERE tenant_id = %s AND feature_key = %s",
                        (scope, secret)).fetchone()["n"] == 0
    for model in ("hybrid", "itemcf", "usercf", "prior", "popularity", "baseline"):
        conn.execute("SELECT reco._evaluation_rank(%s, %s, 3)", (scope, model))
        found = conn.execute("""SELECT count(*) AS n FROM reco.evaluation_ranks
                                WHERE tenant_id = %s AND model = %s AND %s = ANY (items)""",
                             (scope, model, secret)).fetchone()["n"]
        assert found == 0, model  # never even recommended, to anyone
        hits = conn.execute("SELECT count(*) FILTER (WHERE hit_rank IS NOT NULL) AS n FROM reco.evaluation_ranks "
                            "WHERE tenant_id = %s AND model = %s", (scope, model)).fetchone()["n"]
        if model in ("hybrid", "itemcf"):
            assert hits >= 50, model  # the O users' held-out f_i+4 are found: the split is not blind
    conn.execute("SELECT reco.drop_tenant(slug) FROM reco.tenants WHERE tenant_id = %s", (scope,))
    conn.execute("SELECT * FROM reco.evaluate(3, 0)").fetchall()
    assert conn.execute("""SELECT (SELECT count(*) FROM reco.interactions) AS i,
                                  (SELECT count(*) FROM reco.feature_neighbors) AS n,
                                  (SELECT sum(weight) FROM reco.interactions) AS w,
                                  (SELECT count(*) FROM reco.user_vectors) AS v""").fetchone() == live
    assert conn.execute("SELECT count(*) AS n FROM reco.tenants WHERE evaluation_of IS NOT NULL"
                        ).fetchone()["n"] == 0


def test_runs_are_stored_and_comparable_in_sql(tiny):
    tiny.execute("SELECT * FROM reco.evaluate(3, 0)").fetchall()
    tiny.execute("SELECT * FROM reco.evaluate(3, 0, '{\"mmr_lambda\": 0.8}')").fetchall()
    runs = tiny.execute("SELECT run_id, tenant, kind, k, users, settings FROM reco.evaluation_runs ORDER BY 1"
                        ).fetchall()
    assert [(r["tenant"], r["kind"], r["k"], r["users"]) for r in runs] == [("default", "evaluate", 3, 2)] * 2
    assert runs[0]["settings"]["mmr_lambda"] == 1 and runs[1]["settings"]["mmr_lambda"] == 0.8
    view = tiny.execute("SELECT model, ndcg FROM reco.evaluations WHERE run_id = %s ORDER BY model",
                        (runs[0]["run_id"],)).fetchall()
    assert len(view) == 7


def test_evaluate_job_runs_alone(tiny):
    jobs = [r["job"] for r in tiny.execute("SELECT job FROM reco.job_runs ORDER BY run_id")]
    assert "evaluate" not in jobs  # 'all' refreshes; it does not evaluate
    tiny.execute("CALL reco.run_job('evaluate')")
    last = tiny.execute("SELECT job, status, rows_written FROM reco.job_runs ORDER BY run_id DESC LIMIT 1").fetchone()
    assert last == {"job": "evaluate", "status": "succeeded", "rows_written": 2}


def test_exposures_of_ids_not_yet_users_go_into_the_scope(tiny):
    """An exposure served to an id that is not a user yet has a user_id and no user_key: the
    evaluation's copy of the exposures keeps it (it failed the table's check before)."""
    tid = tiny.execute("SELECT reco._tenant_id(NULL) AS t").fetchone()["t"]
    tiny.execute("SELECT reco._log_exposures(%s, NULL, 'stranger', '*=*', 'r-stranger', '{}', NULL)", (tid,))
    scope = tiny.execute("SELECT reco._evaluation_scope(%s, 0, 'seed') AS id", (tid,)).fetchone()["id"]
    copied = tiny.execute("SELECT user_key, request_id FROM reco.exposures "
                          "WHERE tenant_id = %s AND user_id = 'stranger'", (scope,)).fetchall()
    assert copied == [{"user_key": None, "request_id": "r-stranger"}]
    assert [r["model"] for r in tiny.execute("SELECT * FROM reco.evaluate(3, 0)")]  # and the evaluation runs


def test_bad_input(tiny):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
        tiny.execute("SELECT * FROM reco.evaluate(0)")
    assert exc.value.diag.message_hint
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        tiny.execute("SELECT * FROM reco.evaluate(10, 0, '{\"no_such_setting\": 1}')")
    with pytest.raises(psycopg.errors.NoDataFound):
        tiny.execute("SELECT * FROM reco.evaluate(10, 0, '{}', 'no-such-tenant')")


def test_cli_json_and_parallel_ranking(tiny, cli_env):
    from app.cli import app

    result = CliRunner().invoke(app, ["evaluate", "--k", "3", "--users", "0", "--json", "--workers", "2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["k"] == 3 and out["users"] == 2
    assert set(out["results"]) == {"hybrid", "itemcf", "usercf", "prior", "popularity", "baseline", "hybrid_explore"}
    assert out["results"]["baseline"] == {"hit_rate": 0.5, "mrr": 0.5, "ndcg": 0.5, "coverage": 0.75}
    # the same split and numbers as the single-connection SQL path
    sql = {r["model"]: r for r in tiny.execute("SELECT * FROM reco.evaluate(3, 0)")}
    for model, s in out["results"].items():
        if model != "hybrid_explore":
            assert s["ndcg"] == pytest.approx(sql[model]["ndcg"], abs=1e-4), model


def test_cli_table_in_a_pipe_is_not_wrapped_at_80_columns(tiny, cli_env):
    """CliRunner's output is not a terminal (as in `reco evaluate | less`): each model's note stays on
    its row's line."""
    from app.cli import app
    from app.cli.evaluation import MODEL_NOTES

    result = CliRunner().invoke(app, ["evaluate", "--k", "3", "--users", "0"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for model, note in MODEL_NOTES.items():
        if model in ("hybrid", "baseline", "hybrid_explore"):
            assert any(model in line and note in line for line in lines), (model, result.stdout)
