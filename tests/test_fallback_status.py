"""When a job's Python step (EASE here) waits for `reco jobs loop`, the tenant serves a fallback: the
status a DBA reads (reco.job_status, `reco jobs list`, reco.api_job_health and /metrics, the console's
overview) says so and since when, and stops saying it once the step is done."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from app.api import metrics
from app.cli import app

runner = CliRunner()


def _defer_ease(conn) -> None:
    """As pg_cron runs it: no Python in the session, so EASE is left in reco.job_queue."""
    conn.execute("SELECT reco.set_setting('neighbor_model', '\"ease\"')")
    conn.execute("CALL reco.run_job('feature_neighbors')")


def _waiting(conn) -> list[dict]:
    return conn.execute("SELECT tenant, job, waiting_since, waiting_for FROM reco.job_status"
                        " WHERE waiting_since IS NOT NULL ORDER BY job").fetchall()


def test_the_status_view_says_since_when_a_fallback_is_served(world):
    assert _waiting(world) == []
    _defer_ease(world)
    waiting = _waiting(world)
    assert [(w["tenant"], w["job"]) for w in waiting] == [("default", "feature_neighbors")]
    first = waiting[0]["waiting_since"]
    run = world.execute("SELECT status, started_at, finished_at FROM reco.job_runs WHERE job = 'feature_neighbors'"
                        " ORDER BY run_id DESC LIMIT 1").fetchone()
    assert run["status"] == "deferred" and run["started_at"] <= first <= run["finished_at"]
    assert "ease" in waiting[0]["waiting_for"] and "reco jobs loop" in waiting[0]["waiting_for"]
    # deferred again: still waiting since the first time
    world.execute("CALL reco.run_job('feature_neighbors')")
    assert _waiting(world)[0]["waiting_since"] == first
    # a full run (here: a model SQL computes) ends the fallback
    world.execute("SELECT reco.set_setting('neighbor_model', '\"cosine\"')")
    world.execute("CALL reco.run_job('feature_neighbors')")
    assert _waiting(world) == []
    last = world.execute("SELECT status FROM reco.job_status WHERE tenant = 'default' AND job = 'feature_neighbors'"
                         ).fetchone()
    assert last["status"] == "succeeded"


def test_jobs_list_says_the_tenant_serves_a_fallback(cli_env, world):
    res = runner.invoke(app, ["jobs", "list"])
    assert res.exit_code == 0, res.output
    assert "fallback" not in res.stdout
    _defer_ease(world)
    since = _waiting(world)[0]["waiting_since"]
    res = runner.invoke(app, ["jobs", "list"])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.stdout.splitlines() if "serving a fallback" in ln)
    assert line.startswith("default:") and f"since {since:%Y-%m-%d %H:%M}" in line
    assert "feature_neighbors" in line and "reco jobs loop" in line


def test_job_health_and_metrics_carry_the_waiting_since(world):
    _defer_ease(world)
    since = _waiting(world)[0]["waiting_since"].timestamp()
    rows = world.execute("SELECT * FROM reco.api_job_health()").fetchall()
    health = {(r["job"], r["tenant"]): r for r in rows}
    assert health[("feature_neighbors", "default")]["waiting_since"] == since
    assert health[("embeddings", "default")]["waiting_since"] is None
    rendered = metrics.render([tuple(r.values()) for r in rows], per_tenant=True)
    families = text_string_to_metric_families(rendered.decode())
    gauge = next(f for f in families if f.name == "reco_job_waiting_since_timestamp_seconds")
    values = {(x.labels["job"], x.labels["tenant"]): x.value for x in gauge.samples}
    assert values[("feature_neighbors", "default")] == since and values[("embeddings", "default")] == 0


def test_the_console_overview_shows_the_fallback(world, db_url):
    overview = world.execute("SELECT reco.console_overview() AS o").fetchone()["o"]
    assert overview["fallbacks"] == []
    _defer_ease(world)
    overview = world.execute("SELECT reco.console_overview() AS o").fetchone()["o"]
    assert [f["job"] for f in overview["fallbacks"]] == ["feature_neighbors"]
    job = next(j for j in overview["jobs"] if j["job"] == "feature_neighbors")
    assert job["waiting_since"] is not None and job["status"] == "deferred"

    from tests.helpers import console_app, login
    key = world.execute("SELECT reco.create_api_key('default', 'console') AS k").fetchone()["k"]
    with TestClient(console_app(db_url), follow_redirects=False) as client:
        login(client, key)
        html = client.get("/console").text
    assert 'id="fallbacks"' in html and "waiting for Python since" in html
