"""Observability (issue 14): the request log and its level, the request id, the start line,
/readyz's reasons in words, the job metrics read from reco.job_runs, and the shipped Grafana
dashboard and Prometheus alert rules, whose every metric must be one the app exports."""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator

import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from app.api.main import start_line
from app.settings import Settings
from tests.helpers import DAY, ROOT, client_for, error, slow_database, terminate_api_connections, wait_for

DASHBOARD = ROOT / "app" / "observability" / "grafana-dashboard.json"
ALERTS = ROOT / "app" / "observability" / "alerts.yml"


def request_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pgreco.request"]


def samples(client) -> dict[str, list]:
    """Every sample of /metrics by sample name."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the request log -------------------------------------------------------------------------

def test_one_log_line_per_request_with_route_status_ms_and_id(api, caplog):
    caplog.set_level(logging.INFO, logger="pgreco")
    r = api.get("/v1/users/U1/recommendations", headers={"X-Request-ID": "trace-42"})
    assert r.headers["x-request-id"] == "trace-42" and r.json()["request_id"] == "trace-42"
    line = request_lines(caplog)[-1]
    assert re.fullmatch(r"GET /v1/users/\{user_id\}/recommendations 200 \d+\.\dms request_id=trace-42", line), line
    assert "U1" not in line  # the route template, not the path: no user ids in the log
    # no id given: one is made, answered, logged, and the same one is the body's request_id
    r = api.get("/v1/users/U1/recommendations")
    rid = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid) and r.json()["request_id"] == rid
    assert request_lines(caplog)[-1].endswith(f"request_id={rid}")
    # every route, errors too
    r = api.put("/v1/users/V1", json={"paid": "perhaps"})
    assert r.status_code == 422 and r.headers["x-request-id"]
    assert request_lines(caplog)[-1].startswith("PUT /v1/users/{user_id} 422 ")
    r = api.get("/nope", headers={"X-Request-ID": "not valid"})  # a space: replaced
    assert r.headers["x-request-id"] != "not valid" and request_lines(caplog)[-1].startswith("GET unmatched 404 ")


def test_log_level_is_a_setting(seeded, db_url, caplog, monkeypatch):
    monkeypatch.setenv("RECO_LOG_LEVEL", "WARNING")
    assert Settings().log_level == "warning"
    monkeypatch.setenv("RECO_LOG_LEVEL", "loud")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.delenv("RECO_LOG_LEVEL")
    caplog.set_level(logging.DEBUG)  # the handler lets everything through: the setting decides
    with client_for(db_url, log_level="warning") as c:
        c.get("/healthz")
        assert request_lines(caplog) == []
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/reco"
    with client_for(down, log_level="warning", api_pool_timeout=0.2) as c:
        error(c.put("/v1/users/U1", json={}, headers={"Authorization": "Bearer pgr_x"}), 503, "database_unavailable")
        assert [r.levelname for r in caplog.records if r.name == "pgreco.request"] == ["WARNING"]
    with client_for(db_url, log_level="info") as c:
        c.get("/healthz")
        assert request_lines(caplog)[-1].startswith("GET /healthz 200 ")


def test_start_line_says_where_it_listens():
    line = start_line("0.0.0.0", 8123, 2, Settings(api_pool_size=8))
    assert "http://0.0.0.0:8123" in line and "http://0.0.0.0:8123/docs" in line and "2 workers" in line
    assert "[" not in line  # printed through rich: no markup


# --- /readyz in words ---------------------------------------------------------------------------

def test_readyz_says_why_in_words(seeded, db_url, empty_db):
    with client_for(db_url) as c:
        assert c.get("/readyz").json()["status"] == "ready"
    port = free_port()
    with client_for(f"postgresql://postgres@127.0.0.1:{port}/reco", api_pool_timeout=0.2) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        # where the database is goes to the log, not to anyone who asks (docs/hardening.md)
        assert r.json()["reason"] == "database unreachable: connection refused"
    with client_for("postgresql://postgres@/reco?host=/nonexistent-dir&port=5999", api_pool_timeout=0.2) as c:
        reason = c.get("/readyz").json()["reason"]
        assert reason.startswith("database unreachable: ") and \
            "no such file" in reason.lower(), reason
    with client_for(empty_db) as c:
        body = c.get("/readyz").json()
        assert body["status"] == "not migrated" and body["reason"] == "schema not migrated: run `reco migrate`"
        # a request on that database: 503 with the fix, not an opaque 500
        r = c.get("/v1/users/U1/recommendations", headers={"Authorization": "Bearer pgr_x"})
        err = r.json()["error"]
        assert r.status_code == 503 and err["code"] == "not_migrated" and "reco migrate" in err["hint"], r.text
    with client_for(db_url, api_timeout_ms=100) as c, psycopg.connect(db_url) as locker:
        locker.execute("LOCK TABLE reco.sql_files IN ACCESS EXCLUSIVE MODE")
        body = c.get("/readyz").json()
        assert body["status"] == "unavailable" and "did not answer within the statement timeout (100 ms)" in \
            body["reason"], body


def test_readyz_when_the_database_does_not_answer():
    """A server that accepts connections and never answers (a hung host): not a class name."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(listener.accept()[0]) for _ in range(50)], daemon=True).start()
    port = listener.getsockname()[1]
    try:
        with client_for(f"postgresql://postgres@127.0.0.1:{port}/reco?connect_timeout=2", api_pool_timeout=0.2) as c:
            r = c.get("/readyz")  # answered at all: the connection attempts gave up (connect_timeout)
            assert r.status_code == 503
            reason = r.json()["reason"]
            assert reason.startswith("database unreachable: ") and "Timeout" not in reason, reason
    finally:
        listener.close()
        for s in held:
            s.close()


# --- job metrics ----------------------------------------------------------------------------

@pytest.fixture
def scraper(seeded, db_url) -> Iterator:
    """A client of the API as an authorised Prometheus scraper (RECO_METRICS_TOKEN): job metrics per tenant."""
    with client_for(db_url, metrics_token="scrape-token") as c:
        c.headers["Authorization"] = "Bearer scrape-token"
        yield c


def test_job_metrics_come_from_job_runs(scraper, seeded):
    api = scraper
    s = samples(api)
    assert [x.value for x in s["reco_job_metrics_up"]] == [1.0]
    last = {x.labels["job"]: x.value for x in s["reco_job_last_success_timestamp_seconds"]
            if x.labels["tenant"] == "default"}
    assert {"feature_stats", "bandit", "embeddings"} <= set(last)  # the seed ran every job
    ran = {r["job"]: r["t"] for r in seeded.execute(
        """SELECT job, extract(epoch FROM max(finished_at))::float8 AS t FROM reco.job_runs
           WHERE tenant = 'default' AND status = 'succeeded' GROUP BY job""")}
    assert last == pytest.approx({job: ran[job] for job in last})  # epoch seconds of the runs' ends
    assert all(x.value == 0 for x in s["reco_job_last_run_failed"])
    seeded.execute("""INSERT INTO reco.job_runs (job, tenant, status, message, finished_at)
                      VALUES ('bandit', 'default', 'failed', 'boom', clock_timestamp())""")
    s = samples(api)
    failed = {(x.labels["job"], x.labels["tenant"]): x.value for x in s["reco_job_last_run_failed"]}
    runs = {(x.labels["job"], x.labels["tenant"]): x.value for x in s["reco_job_failed_runs_24h"]}
    assert failed[("bandit", "default")] == 1 and runs[("bandit", "default")] == 1
    assert failed[("feature_stats", "default")] == 0


def test_metrics_answer_without_the_database():
    with client_for(f"postgresql://postgres@127.0.0.1:{free_port()}/reco", api_pool_timeout=0.2) as c:
        s = samples(c)  # after at most the pool timeout: the job metrics are then marked down
        assert [x.value for x in s["reco_job_metrics_up"]] == [0.0]
        assert "reco_job_last_success_timestamp_seconds" not in s


# --- the shipped dashboard and alert rules ------------------------------------------------------

METRIC = re.compile(r"\b(reco_[a-z0-9_]+)\b")


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def test_dashboard_and_alerts_cover_what_operators_need():
    board = json.loads(DASHBOARD.read_text())
    titles = " | ".join(p["title"].lower() for p in board["panels"])
    for what in ("request rate", "error rate", "degraded", "p50", "p99", "job failures", "job staleness"):
        assert what in titles, what
    assert all(p["targets"] and p["datasource"]["uid"] == "${datasource}" for p in board["panels"])
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    rules = alert_rules()
    for rule in rules:
        assert rule["alert"].startswith("Pgreco") and rule["expr"].strip()
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
    exprs = {r["alert"]: r["expr"] for r in rules}
    assert any('status=~"5.."' in e for e in exprs.values())                       # error rate
    assert any("reco_degraded_responses_total" in e for e in exprs.values())       # degraded share
    assert any("histogram_quantile(0.99" in e for e in exprs.values())             # p99
    assert any("reco_job_last_run_failed" in e for e in exprs.values())            # job failures
    assert any("reco_job_last_success_timestamp_seconds" in e for e in exprs.values())  # staleness


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed (Debian: apt-get install prometheus)")
def test_alerts_and_dashboard_queries_are_valid_promql(tmp_path):
    check = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    rules = [{"record": f"pgreco:dashboard_{i}", "expr": e} for i, e in enumerate(dashboard_exprs())]
    (tmp_path / "dash.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    check = subprocess.run(["promtool", "check", "rules", str(tmp_path / "dash.yml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_metric_of_the_dashboard_and_alerts_is_exported(seeded, db_url, flaky):
    """The app exercised so that every series exists (a request of each kind, a degraded answer,
    an ingest, a replaced dead connection, a retried statement, job runs), then each metric named
    by the dashboard or an alert rule must be a sample of /metrics."""
    used = {m for e in dashboard_exprs() + [r["expr"] for r in alert_rules()] for m in METRIC.findall(e)}
    assert len(used) >= 8
    with client_for(db_url) as c:
        c.headers["Authorization"] = f"Bearer {seeded.key}"
        assert c.get("/v1/users/U1/recommendations").json()["degraded"] is False
        st = c.app.state.reco
        wait_for(lambda: st.popular.get("default"))
        with slow_database(db_url, "reco.features"):
            assert c.get("/v1/users/U1/recommendations").json()["degraded"] is True
        assert c.post("/v1/events", json={"user_id": "O1", "feature_id": "a", "occurred_at": DAY}).status_code == 200
        terminate_api_connections(seeded)
        assert c.get("/v1/features/a/similar").status_code == 200
        flaky(1)
        assert c.put("/v1/users/O2", json={"paid": True}).status_code == 200
        wait_for(lambda: "reco_db_pool_connections" in samples(c))  # set by the refresh loop
        exported = set(samples(c))
    missing = sorted(used - exported)
    assert not missing, f"used by app/observability but not exported: {missing}"


def test_a_database_outage_is_logged_once_with_timestamps():
    """psycopg_pool warns once per failed connection attempt (70 lines in a short outage, with no
    timestamp when nothing configured its logger): through the API's logging setup the first
    warning and the recovery are logged, with timestamps; a second outage is logged again."""
    import sys

    script = """
import logging
from app.api.metrics import configure_logging
configure_logging("info")
pool = logging.getLogger("psycopg.pool")
for outage in (1, 2):
    for i in range(35):
        for name in ("pool-1", "pool-2"):
            pool.warning("error connecting in %r: %s", name, "connection refused")
    pool.info("connection requested from %r", "pool-1")
    pool.info("adding new connection to the pool")
    pool.info("adding new connection to the pool")
"""
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    lines = ran.stderr.splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING psycopg\.pool: "
    assert len(lines) == 4, ran.stderr
    for line in lines[::2]:
        assert re.match(stamp + "error connecting in 'pool-1': connection refused \\(the database is unreachable",
                        line), line
    for line in lines[1::2]:
        assert re.match(stamp + r"the database is reachable again \(69 more pool errors not logged\)$", line), line
