"""An evaluation computes what the tenant serves or refuses, and every stored run says how it was computed:
EASE on a small catalog is inverted in SQL (the same weights as numpy), so the SQL evaluation of an EASE tenant
equals `reco evaluate`'s; above what SQL computes (EASE over more than 64 features, SVD factors) the SQL
evaluation and tune refuse with a hint, the evaluate job defers to `reco jobs loop`, which computes it."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.helpers import crafted as _crafted
from tests.helpers import day, features
from tests.helpers import ingest_successes as ingest

EASE = {"neighbor_model": "ease", "neighbors_k": 20, "ease_lambda": 250}


def _settings(conn, values: dict, tenant: str | None = None) -> None:
    for key, value in values.items():
        conn.execute("SELECT reco.set_setting(%s, %s, %s)", (key, Jsonb(value), tenant))


def test_sql_ease_weights_equal_numpy(db_url, conn):
    from jobs.ease import write_ease_weights

    _crafted(conn)
    _settings(conn, EASE)
    weights = "SELECT feature_key, neighbor_key, score FROM reco.neighbor_weights WHERE tenant_id = 1"
    assert write_ease_weights(conn, None) > 0
    numpy = {(r["feature_key"], r["neighbor_key"]): r["score"] for r in conn.execute(weights)}
    assert conn.execute("SELECT reco._sql_ease_weights(1) AS n").fetchone()["n"] == len(numpy)
    sql = {(r["feature_key"], r["neighbor_key"]): r["score"] for r in conn.execute(weights)}
    assert sql.keys() == numpy.keys()
    assert all(sql[key] == pytest.approx(numpy[key], rel=1e-9, abs=1e-12) for key in numpy)


def test_sql_evaluation_of_an_ease_tenant_equals_reco_evaluate(db_url, conn):
    """The issue's case: the SQL evaluation of a tenant tuned to EASE computed no EASE neighbours and
    stored other numbers than `reco evaluate`; now both compute EASE and agree, and say how."""
    from jobs.evaluate import evaluate
    from jobs.runner import run_job

    _crafted(conn)
    _settings(conn, EASE)
    run_job(db_url, "feature_neighbors")
    sql = {r["model"]: r for r in conn.execute("SELECT * FROM reco.evaluate(10, 0)")}
    py = evaluate(db_url, None, k=10, users=0)
    assert set(sql) == set(py.scores) and sql["itemcf"]["ndcg"] > 0
    for model, scores in py.scores.items():
        assert sql[model]["ndcg"] == pytest.approx(scores["ndcg"], abs=1e-9), model
        assert sql[model]["hit_rate"] == pytest.approx(scores["hit_rate"], abs=1e-9), model
    runs = {r["run_id"]: r["provenance"] for r in conn.execute("SELECT run_id, provenance FROM reco.evaluation_runs")}
    assert runs[sql["hybrid"]["run_id"]]["neighbors_by"] == "sql (reco._sql_ease_weights)"
    assert runs[py.run_id]["neighbors_by"] == "numpy (jobs/ease.py)"
    for provenance in runs.values():
        assert provenance["neighbor_model"] == "ease" and provenance["neighbors_k"] == 20
        assert provenance["factors"] == "exact" and provenance["not_computed"] == []
        assert provenance["ranking"] == "sql (reco.recommend_features)"


def _wide(conn) -> None:
    """70 features (above the 64 SQL inverts and the 64 dimensions of exact user vectors), on EASE."""
    keys = [f"w{i}" for i in range(70)]
    features(conn, keys)
    ingest(conn, [(f"U{u}", keys[(u + j * 7) % 70], day(1 + j)) for u in range(60) for j in range(3)])
    _settings(conn, EASE)


def test_what_sql_cannot_compute_is_refused_deferred_or_computed_by_python(db_url, conn):
    from jobs.runner import run_job

    _wide(conn)
    for call, command in (("SELECT * FROM reco.evaluate(10, 0)", "reco evaluate"), ("SELECT reco.tune()", "reco tune")):
        with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
            conn.execute(call)
        assert "EASE" in refused.value.diag.message_primary and "SVD" in refused.value.diag.message_primary
        assert command in refused.value.diag.message_hint and "reco jobs loop" in refused.value.diag.message_hint
    assert conn.execute("SELECT count(*) AS n FROM reco.evaluation_runs").fetchone()["n"] == 0
    # a scope built anyway (the steps SQL cannot do are deferred in it) is not recorded: nothing is stored
    scope = conn.execute("SELECT reco._evaluation_scope(1, 0, 'x') AS s").fetchone()["s"]
    conn.execute("SELECT reco._evaluation_rank(%s, 'hybrid', 10)", (scope,))
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        conn.execute("SELECT reco._evaluation_record(%s, 'evaluate', 10, '{}', now())", (scope,))
    conn.execute("SELECT reco.drop_tenant(slug) FROM reco.tenants WHERE tenant_id = %s", (scope,))
    assert conn.execute("SELECT count(*) AS n FROM reco.evaluation_runs").fetchone()["n"] == 0
    # as pg_cron runs it: deferred to the loop; the Python runner computes it
    conn.execute("CALL reco.run_job('evaluate')")
    run = conn.execute("SELECT status, message FROM reco.job_runs WHERE job = 'evaluate'").fetchone()
    assert run["status"] == "deferred" and "ease and svd" in run["message"]
    assert conn.execute("SELECT job FROM reco.job_queue").fetchall() == [{"job": "evaluate"}]
    conn.execute("CALL reco.run_job('tune')")
    run = conn.execute("SELECT status, message FROM reco.job_runs WHERE job = 'tune'").fetchone()
    assert run["status"] == "deferred" and "ease and svd" in run["message"]
    runs = run_job(db_url, "evaluate")
    assert [r["status"] for r in runs] == ["succeeded"] and runs[0]["rows_written"] > 0
    stored = conn.execute("SELECT provenance FROM reco.evaluation_runs").fetchall()
    assert len(stored) == 1
    assert stored[0]["provenance"]["neighbors_by"] == "numpy (jobs/ease.py)"
    assert stored[0]["provenance"]["factors"] == "svd" and sorted(stored[0]["provenance"]["python_steps"]) == [
        "ease", "svd"]
    assert conn.execute("SELECT job FROM reco.job_queue").fetchall() == [{"job": "tune"}]
