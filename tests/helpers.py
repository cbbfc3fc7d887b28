"""Helpers shared by the test modules: a test module imports from here (or takes a fixture of
conftest.py), never from another test module.

No test may depend on the machine being fast (it is shared, and both cores are busy when the suite
runs beside other work). So:

- waiting is polling with a generous deadline (``wait_for``, ``PATIENT``): the deadline costs
  nothing when the test passes and only bounds a test that fails;
- the API under test gets generous timeouts (``api_settings``): a statement or a pool acquisition
  that is merely slow never turns into a degraded answer or a 503. A test about timeouts makes the
  database *block* (a lock, a cut proxy), never merely slow, and shortens the wait only where the
  block is certain (``slow_database``, ``database_away``);
- clocks that decide an outcome (rate-limit buckets, key confirmation) are frozen and moved by the
  test (``Clock``), instead of sleeping and hoping the machine kept up.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import random
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from app.db import as_role, with_dbname
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DAY = "2026-10-15T00:00:00Z"

#: seconds any poll waits before it gives up: only a failing test waits that long
PATIENT = 300.0

#: the API's timeouts in tests: a request waits for the database as long as it takes. The product
#: defaults (50 ms per read statement, 0.5 s for a pooled connection) are for a production server;
#: on a busy test machine a cold backend's first call can take longer, which would answer a
#: degraded list, or 503 for a key not yet seen (issue 23: test_unknown_user_gets_cold_start_not_404)
GENEROUS = {"api_timeout_ms": 600_000, "api_write_timeout_ms": 600_000, "api_pool_timeout": PATIENT}

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], seconds: float = PATIENT, what: str = "the condition") -> T:
    """Poll ``predicate`` until it returns something true, and return that; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {seconds:g} s waiting for {what}"
        time.sleep(0.05)


def ingest(conn: psycopg.Connection, rows: list[tuple[str, str]]) -> None:
    """Events (user, feature) at DAY, all accepted (every weight is exactly 1)."""
    report = conn.execute("SELECT reco.ingest_events(%s) AS r", (Jsonb(
        [{"user_id": u, "feature_id": f, "occurred_at": DAY} for u, f in rows]),)).fetchone()["r"]
    assert report["rejected"] == [] and report["accepted"] == len(rows)


# --- the API under test ------------------------------------------------------------------------

def api_settings(url: str, **settings: Any) -> Settings:
    """Settings of a test API on ``url``: GENEROUS timeouts unless the test says otherwise."""
    return Settings(database_url=url, **{**GENEROUS, **settings})


def app_for(url: str, **settings: Any) -> FastAPI:
    """The API app on ``url`` (as role reco_api, as deployed), with ``api_settings``."""
    from app.api.main import create_app

    return create_app(api_settings(url, **settings), url=as_role(url, "reco_api"))


def client_for(url: str, **settings: Any) -> TestClient:
    return TestClient(app_for(url, **settings))


def error(resp, status: int, code: str) -> dict:
    """The error body of ``resp``, checked to be in the documented shape with this status and code."""
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["status"] == status and body["code"] == code and body["message"]
    return body


def metric(client: TestClient, name: str, **labels: str) -> float:
    """The value of one sample of /metrics (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


class Clock:
    """A clock that moves only when the test moves it (``now += seconds``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def frozen_rate_limit_clock(client: TestClient) -> Clock:
    """The client's rate limiter on a Clock of the test's: a bucket refills only when the test
    says time passed, however long the requests take."""
    clock = Clock()
    client.app.state.reco.limiter.clock = clock
    return clock


class ShiftedTime:
    """The ``time`` module as app.api.state sees it, with ``monotonic`` moved forward by ``shift``."""

    def __init__(self) -> None:
        self.offset = 0.0

    def shift(self, seconds: float) -> None:
        self.offset += seconds

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def shifted_api_clock(monkeypatch) -> ShiftedTime:
    """The API state's clock (key confirmations, pool waits, refreshes) as a ShiftedTime: the test
    ages what the API remembers by ``shift(seconds)`` instead of sleeping that long."""
    shifted = ShiftedTime()
    monkeypatch.setattr("app.api.state.time", shifted)
    return shifted


# --- faults ------------------------------------------------------------------------------------

@contextlib.contextmanager
def slow_database(db_url: str, table: str = "reco.features") -> Iterator[None]:
    """The database too slow for the API: ``table`` locked, and every API statement that waits for
    the lock cancelled the moment it waits, with the error a statement timeout raises
    (57014 query_canceled). The API's statement timeout can then stay generous (a slow machine
    never times out a call by accident) and the test does not wait for it to run out."""
    stop = threading.Event()
    cancelled: set[tuple[int, datetime]] = set()
    problems: list[BaseException] = []

    def cancel_waiters() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as c:
                while not stop.is_set():
                    for pid, started in c.execute(
                            """SELECT pid, query_start FROM pg_stat_activity
                               WHERE datname = current_database() AND application_name = 'pgreco-api'
                                 AND wait_event_type = 'Lock'""").fetchall():
                        if (pid, started) not in cancelled:  # each statement once
                            cancelled.add((pid, started))
                            c.execute("SELECT pg_cancel_backend(%s)", (pid,))
                    stop.wait(0.02)
        except BaseException as exc:  # reported by the test's thread
            problems.append(exc)

    with psycopg.connect(db_url) as locker:
        locker.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.Identifier(*table.split("."))))
        canceller = threading.Thread(target=cancel_waiters, daemon=True)
        canceller.start()
        try:
            yield
        finally:
            stop.set()
            canceller.join(PATIENT)
            locker.rollback()
    assert not problems, problems


class Proxy:
    """A TCP proxy in front of the database, to make it unreachable and reachable again."""

    def __init__(self, db_url: str) -> None:
        info = psycopg.conninfo.conninfo_to_dict(db_url)
        host, port = info.get("host") or "localhost", int(info.get("port") or 5432)
        self.target = (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}") if host.startswith("/") else \
            (socket.AF_INET, (host, port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = psycopg.conninfo.make_conninfo(db_url, host="127.0.0.1", port=self.port)
        self.up = True
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            if not self.up:
                client.close()
                continue
            server = socket.socket(self.target[0], socket.SOCK_STREAM)
            server.connect(self.target[1])
            self.pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up = False
        for a, b in self.pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        self.pairs.clear()

    def restore(self) -> None:
        self.up = True


def database_away(client: TestClient, proxy: Proxy, pool_timeout: float = 0.3) -> None:
    """Cut the proxy, and from now on let a request wait only ``pool_timeout`` seconds for a
    connection (the setting is read per request): no connection can come, so that is how long a
    degraded answer takes. Until the cut the client waited generously, so that a slow machine
    never degraded an answer that the test expects whole."""
    client.app.state.reco.settings.api_pool_timeout = pool_timeout
    proxy.cut()


def terminate_api_connections(conn: psycopg.Connection) -> int:
    """Terminate the API's connections to this database and wait until their backends have
    exited (their goodbye is then on the pooled sockets): how many there were."""
    return conn.execute("""SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, %s)) AS n FROM pg_stat_activity
                           WHERE application_name = 'pgreco-api' AND datname = current_database()""",
                        (int(PATIENT * 1000),)).fetchone()["n"]


def backend_gone(conn: psycopg.Connection, pid: int) -> None:
    """Until the backend ``pid`` has exited (a closed client's backend ends, and drops its locks,
    a moment later)."""
    wait_for(lambda: not conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone(),
             what=f"backend {pid} to exit")


# --- the console's data ------------------------------------------------------------------------

XSS_USER = '<script>alert("user")</script>'
XSS_FEATURE = "x-<img>"
XSS_NAME = "<img src=x onerror=alert(1)>"


def seed_demo(url: str, tmp: Path, *, users: int = 200, days: int = 30, tune_users: int | None = None) -> str:
    """Generated demo data (app.tools.demodata) imported as `reco import` does, the jobs, an evaluation and
    optionally the tune job; an API key of tenant default is returned."""
    from app.importer import import_csv
    from app.tools.demodata import generate
    from jobs.runner import run_job

    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(seconds=1)
    generate(tmp, users=users, features=24, days=days, seed=11, end=end)
    for kind in ("features", "plans", "users", "events"):
        import_csv(url, kind, tmp / f"{kind}.csv")
    run_job(url, "all")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT * FROM reco.evaluate(10)")
        if tune_users:
            conn.execute("SELECT reco.tune(NULL, %s, false)", (tune_users,))
        return conn.execute("SELECT reco.create_api_key('default', 'console tests')").fetchone()[0]


def seed_experiment(url: str, key: str, users: int = 200) -> None:
    """An A/B test in scenario home (users served through reco.api_serve, clicks on shown features
    ingested, more in the treatment) and a draft experiment."""
    rng = random.Random(5)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SELECT reco.upsert_scenario('home', '{}', 'the home page')")
        conn.execute("SELECT reco.create_experiment('usercf-boost', %s, %s)", (
            Jsonb([{"name": "control"}, {"name": "boost", "overrides": {"weight_usercf": 0.3}}]),
            Jsonb({"scenario": "home", "primary_metric": "clicked", "secondary_metrics": ["click_rate"],
                   "guardrail_metrics": ["uses"], "looks": 4, "planned_users": 2 * users,
                   "description": "more weight on users like you"})))
        conn.execute("SELECT reco.start_experiment('usercf-boost')")
        conn.execute("SELECT reco.create_experiment('next-idea', %s, %s)", (
            Jsonb([{"name": "control"}, {"name": "mmr", "overrides": {"mmr_lambda": 0.7}}]),
            Jsonb({"scenario": "home"})))
        ids = [r["user_id"] for r in conn.execute(
            "SELECT user_id FROM reco.users ORDER BY user_key LIMIT %s", (users,)).fetchall()]
        bodies = conn.execute(
            "SELECT reco.api_serve(%s, 'recommendations', u.id, 5, '{\"scenario\": \"home\"}', 'console-' || u.id,"
            " true, false)::jsonb AS body FROM unnest(%s::text[]) AS u(id)", (key, ids)).fetchall()
        # after the exposures (recorded at clock_timestamp(), which the seconds of an ISO time would precede)
        now = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        clicks = [{"event_id": f"click-{b['body']['user_id']}", "user_id": b["body"]["user_id"],
                   "feature_id": rng.choice(b["body"]["items"])["feature_id"], "occurred_at": now}
                  for b in bodies if b["body"]["items"]
                  and rng.random() < (0.45 if b["body"]["variant"] == "boost" else 0.25)]
        conn.execute("SELECT reco.ingest_events(%s)", (Jsonb(clicks),))


_databases = itertools.count()


def database(server_url: str, template_db: str) -> Iterator[str]:
    """A clone of the template for a module's fixture (a generator: iterate it once), dropped after."""
    name = f"reco_console_{uuid.uuid4().hex[:8]}_{next(_databases)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                       sql.Identifier(template_db)))
    try:
        yield with_dbname(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def console_app(url: str, **settings: Any) -> FastAPI:
    """The API app with the console (registered here unless app.api.main includes it)."""
    from app import console

    app = app_for(url, **settings)
    if not any(getattr(r, "path", "").startswith("/console") for r in app.routes):
        app.include_router(console.router)
    return app


XSS_CHURN_USER = '<script>alert("churn")</script>'


def seed_churn(url: str, tenant: str = "default", users: int = 40, xss: bool = True) -> dict:
    """A hand-made churn state (what the churn jobs would leave; migration 0024's tables): events, two
    logistic model versions (v2 active, with coefficients and a calibration table), a matured scoring
    30 days ago (users c01..c{users/2} were active in the 14 days after it, the others churned) and the
    latest scoring 2 days ago with reasons, the riskiest user named XSS_CHURN_USER (unless not xss). Returns the days,
    the churned ids and the model ids."""
    today = datetime.now(UTC).date()
    matured, latest = today - timedelta(days=30), today - timedelta(days=2)
    ids = [f"c{i:02d}" for i in range(1, users + 1)] + ([XSS_CHURN_USER] if xss else [])
    stayed = set(ids[: users // 2])

    def at(day, hour: int = 12) -> str:
        return f"{day.isoformat()}T{hour:02d}:00:00Z"

    events = [{"event_id": f"churn-{n}-{k}", "user_id": u, "feature_id": "churn-feature", "occurred_at": at(d)}
              for n, u in enumerate(ids)
              for k, d in enumerate([matured - timedelta(days=10), matured - timedelta(days=3)]
                                    + ([matured + timedelta(days=3)] if u in stayed else []))]
    events.append({"event_id": "churn-last", "user_id": ids[0], "feature_id": "churn-feature",
                   "occurred_at": at(today - timedelta(days=1))})
    # a payment each within the last 30 days (after the matured window): the retention list's value per user
    events += [{"event_id": f"churn-pay-{n}", "user_id": u, "feature_id": "churn-feature", "kind": "payment",
                "props": {"amount": 20 + n % 5 * 10}, "occurred_at": at(today - timedelta(days=5))}
               for n, u in enumerate(ids)]
    rng = random.Random(26)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SELECT reco.upsert_features(%s, %s)", (Jsonb([{"feature_id": "churn-feature"}]), tenant))
        conn.execute("SELECT reco.ingest_events(%s, %s)", (Jsonb(events), tenant))
        tid = conn.execute("SELECT reco._tenant_id(%s) AS t", (tenant,)).fetchone()["t"]
        keys = {r["user_id"]: r["user_key"] for r in conn.execute(
            "SELECT user_id, user_key FROM reco.users WHERE tenant_id = %s AND user_id = ANY (%s)", (tid, ids))}
        windows = Jsonb({"churn_window_days": 14, "activity_kinds": [], "observation_days": 30})
        features = ["days_since_last", "active_days_30", "failure_rate"]
        model = {}
        for version, active, metrics in (
                (1, False, {"auc": 0.7112, "brier": 0.2031, "validation_rows": 300, "validation_churners": 70}),
                (2, True, {"auc": 0.8347, "brier": 0.1408, "validation_rows": 420, "validation_churners": 96,
                           "calibration": [{"rows": 42, "predicted": round(0.05 + 0.1 * b, 4),
                                            "observed": round(0.04 + 0.1 * b + 0.01 * (b % 3), 4)}
                                           for b in range(10)]})):
            model[version] = conn.execute(
                "INSERT INTO reco.models (tenant_id, version, kind, windows, features, metrics, params, active,"
                " activated_at) VALUES (%s, %s, 'logistic', %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END)"
                " RETURNING model_id", (tid, version, windows, features, Jsonb(metrics),
                                        Jsonb({"intercept": -1.1, "l2": 1.0}), active, active)).fetchone()["model_id"]
            for feature, coef in zip(features, (1.9 / version, -1.2, 0.45 * version), strict=True):
                conn.execute("INSERT INTO reco.model_coefficients VALUES (%s, %s, %s, 10, 3, %s)",
                             (tid, model[version], feature, coef))

        def tier(p: float) -> str:
            return "high" if p >= 0.7 else "medium" if p >= 0.4 else "low"

        rows = []
        for n, u in enumerate(ids):
            # the matured scoring: the churners mostly above the stayers (some overlap: AUC < 1)
            p = round(min(0.97, (0.45 if u not in stayed else 0.1) + 0.5 * rng.random()), 4)
            rows.append((tid, matured, keys[u], model[1], p, tier(p), Jsonb([])))
            q = 0.99 if u == XSS_CHURN_USER else round(0.02 + 0.9 * rng.random(), 4)
            reasons = [{"feature": "days_since_last", "value": 5 + n, "contribution": round(2 * q, 3)},
                       {"feature": "active_days_30", "value": 30 - n % 30, "contribution": round(-0.5 * q, 3)}]
            rows.append((tid, latest, keys[u], model[2], q, tier(q), Jsonb(reasons)))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO reco.churn_scores (tenant_id, as_of, user_key, model_id, probability, tier,"
                            " reasons) VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
    return {"matured": matured, "latest": latest, "churned": set(ids) - stayed, "ids": ids, "models": model,
            "tenant_id": tid}


RETENTION_STAND_IN = """
CREATE TABLE IF NOT EXISTS reco.test_stored_lists (budget numeric);
-- the retention loop's signature (h-retain): stores the list, returns its users; here the riskiest first,
-- 5.00 a coupon, while the budget lasts, every 10th held out
CREATE FUNCTION reco.retention_list(p_budget numeric, p_actions jsonb DEFAULT NULL, p_tenant text DEFAULT NULL,
                                    p_at timestamptz DEFAULT now())
RETURNS TABLE (list_id int, rank int, user_id text, action text, tier text, probability float8, value numeric,
               win_back_rate float8, rate_source text, cost numeric, expected_profit numeric, held_out boolean)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO reco.test_stored_lists VALUES (p_budget);
    RETURN QUERY
    SELECT 1, s.n::int, s.user_id, 'coupon'::text, s.tier, s.probability, 40::numeric, 0.3::float8,
           CASE WHEN s.tier = 'high' THEN 'measured' ELSE 'assumed' END, 5::numeric,
           round((s.probability * 0.3 * 40 - 5)::numeric, 4), s.n % 10 = 0
    FROM (SELECT u.user_id, c.tier, c.probability, row_number() OVER (ORDER BY c.probability DESC, u.user_id) AS n
          FROM reco.churn_scores c JOIN reco.users u USING (tenant_id, user_key)
          WHERE c.tenant_id = reco._tenant_id(p_tenant)
            AND c.as_of = (SELECT max(as_of) FROM reco.churn_scores WHERE tenant_id = reco._tenant_id(p_tenant))) AS s
    WHERE (s.n - s.n / 10) * 5 <= p_budget;
END $$;
CREATE FUNCTION reco.retention_effects(p_tenant text DEFAULT NULL, p_at timestamptz DEFAULT now())
RETURNS TABLE (action text, tier text, lists bigint, treated bigint, treated_churned bigint, held_out bigint,
               held_out_churned bigint, churn_treated float8, churn_held_out float8, win_back_rate float8,
               ci_low float8, ci_high float8, p_value float8, significant boolean, assumed_rate float8,
               rate_in_use float8, source text)
LANGUAGE sql STABLE AS $$
    VALUES ('coupon', 'high', 3::bigint, 400::bigint, 120::bigint, 44::bigint, 25::bigint, 0.3, 0.5682, 0.4720,
            0.3102, 0.5981, 0.0004, true, 0.3, 0.4720, 'measured'),
           ('coupon', 'low', 3, 80, 8, 9, 1, 0.1, 0.1111, 0.1, -2.1, 0.92, 0.91, false, 0.3, 0.3, 'assumed')
$$;
"""


def no_retention_loop(url: str) -> None:
    """Drop reco.retention_list and reco.retention_effects (a test database's: real or stand-ins)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP FUNCTION IF EXISTS reco.retention_list(numeric, jsonb, text, timestamptz);"
                     " DROP FUNCTION IF EXISTS reco.retention_effects(text, timestamptz);"
                     " DROP TABLE IF EXISTS reco.test_stored_lists")


def retention_stand_in(url: str) -> None:
    """reco.retention_list and reco.retention_effects with the retention loop's signatures and known rows
    (RETENTION_STAND_IN; each list it makes adds a row to reco.test_stored_lists), replacing real ones."""
    no_retention_loop(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RETENTION_STAND_IN)


# --- calls and data sets several modules share ----------------------------------------------------

def recommend(conn, user: str, k: int = 10, options: dict | None = None) -> list[dict]:
    return conn.execute("SELECT * FROM reco.recommend_features(%s, %s, %s)",
                        (user, k, Jsonb(options or {}))).fetchall()


def day(d: int, hour: int = 12) -> str:
    """An instant of October 2026 (day ``d``, ``hour`` o'clock UTC)."""
    return f"2026-10-{d:02d}T{hour:02d}:00:00Z"


def ingest_successes(conn, events: list[tuple[str, str, str]], tenant: str | None = None) -> None:
    """Events (user, feature, time), each a success, all accepted (in ``tenant``, or the default one)."""
    report = conn.execute("SELECT reco.ingest_events(%s, %s) AS r", (Jsonb(
        [{"user_id": u, "feature_id": f, "occurred_at": t, "success": True} for u, f, t in events]), tenant)
    ).fetchone()["r"]
    assert report["rejected"] == [] and report["accepted"] == len(events)


def features(conn, ids: str | list[str], tenant: str | None = None) -> None:
    """Features with these ids, each in a category of its own (c-<id>)."""
    conn.execute("SELECT reco.upsert_features(%s, %s)", (Jsonb(
        [{"feature_id": f, "category": f"c-{f}"} for f in ids]), tenant))


CRAFTED_PAIRS = 10
CRAFTED_NOISE = 20


def crafted(conn, tenant: str | None = None) -> None:
    """The tune job's crafted data set (tests/test_tune.py's docstring): each user's next feature follows the
    one used most recently, while an old, often-used one points elsewhere; τ 365 days, jobs run."""
    now = datetime.now(UTC)
    at = lambda days: (now - timedelta(days=days)).isoformat()  # noqa: E731
    features = ([{"feature_id": f"A{k}", "category": "a"} for k in range(CRAFTED_PAIRS)]
                + [{"feature_id": f"B{k}", "category": "b"} for k in range(CRAFTED_PAIRS)]
                + [{"feature_id": f"N{n}", "category": "n"} for n in range(CRAFTED_NOISE)])
    conn.execute("SELECT reco.upsert_features(%s, %s)", (Jsonb(features), tenant))
    events = []
    # teachers: A_k then B_k a month ago (where the pairs are learned), a noise feature last
    for t in range(100):
        k = t % CRAFTED_PAIRS
        events += [(f"T{t}", f"A{k}", at(30.2)), (f"T{t}", f"B{k}", at(30.1)),
                   (f"T{t}", f"N{t % CRAFTED_NOISE}", at(1))]
    # students: A_j used five times two months ago, A_k two days ago, B_k yesterday (held out)
    for u in range(150):
        k, j = u % CRAFTED_PAIRS, (u % CRAFTED_PAIRS + 1 + u // CRAFTED_PAIRS % (CRAFTED_PAIRS - 1)) % CRAFTED_PAIRS
        events += [(f"S{u}", f"A{j}", at(60 - r / 10)) for r in range(5)]
        events += [(f"S{u}", f"A{k}", at(2)), (f"S{u}", f"B{k}", at(1))]
    report = conn.execute("SELECT reco.ingest_events(%s, %s) AS r", (Jsonb(
        [{"user_id": u, "feature_id": f, "occurred_at": t} for u, f, t in events]), tenant)).fetchone()["r"]
    assert report["rejected"] == [] and report["accepted"] == len(events)
    conn.execute("SELECT reco.set_setting('decay_tau_days', '365', %s)", (tenant,))
    conn.execute("SELECT reco.rebuild_interactions(%s)", (tenant,))
    conn.execute("CALL reco.run_job('all', %s)", (tenant,))


def create_experiment(conn, name: str, variants: list[dict], **options) -> int:
    """reco.create_experiment with these variants and options; its id."""
    return conn.execute("SELECT reco.create_experiment(%s, %s, %s) AS id",
                        (name, Jsonb(variants), Jsonb(options))).fetchone()["id"]


def simulate_experiment(conn, name: str, rates: dict[str, float], users: int = 3000, seed: float = 0.3) -> None:
    """Serve every user once in the experiment's scenario, then a use of a shown feature with the
    variant's probability (drawn in SQL, seeded)."""
    key = conn.execute("SELECT reco.create_api_key() AS k").fetchone()["k"]
    conn.execute("SELECT reco.upsert_users(jsonb_agg(jsonb_build_object('user_id', 'sim-' || g)))"
                 " FROM generate_series(1, %s::int) g", (users,))
    # a third of them used a feature three days before (the pre-period of CUPED)
    conn.execute("SELECT reco.ingest_events(jsonb_agg(jsonb_build_object('event_id', 'pre-' || g,"
                 " 'user_id', 'sim-' || g, 'feature_id', 'a', 'occurred_at', now() - interval '3 days')))"
                 " FROM generate_series(1, %s::int, 3) g", (users,))
    conn.execute("""CREATE TEMP TABLE served AS
                    SELECT 'sim-' || g AS id,
                           reco.api_serve(%s, 'recommendations', 'sim-' || g, 3, '{}', %s || g, true, false)::jsonb AS b
                    FROM generate_series(1, %s::int) g""", (key, name, users))
    conn.execute("SELECT setseed(%s)", (seed,))
    conn.execute("""SELECT reco.ingest_events(jsonb_agg(jsonb_build_object(
                        'event_id', 'c-' || id, 'user_id', id, 'feature_id', b -> 'items' -> 0 ->> 'feature_id',
                        'occurred_at', now())))
                    FROM served WHERE random() < (%s::jsonb ->> (b ->> 'variant'))::float8""", (Jsonb(rates),))
    conn.execute("DROP TABLE served")


def experiment_report(conn, name: str) -> list[dict]:
    """reco.experiment_report's rows."""
    return conn.execute("SELECT * FROM reco.experiment_report(%s)", (name,)).fetchall()


def form_token(html: str) -> str:
    """The CSRF token a page's form carries."""
    m = re.search(r'name="csrf" value="([0-9a-f]*)"', html)
    assert m, "no CSRF token in the form"
    return m.group(1)


def post_login(client: TestClient, data: dict, headers: dict | None = None):
    """The login form as a browser sends it: fetched first (its token and cookie), then posted."""
    token = form_token(client.get("/console/login").text)
    return client.post("/console/login", data={"csrf": token, **data}, headers=headers)


def login(client: TestClient, key: str, next_url: str = "/console") -> None:
    """Log ``client`` into the console with ``key`` (the session cookie stays in the client)."""
    r = post_login(client, {"key": key, "next": next_url})
    assert r.status_code == 303, r.text


#: the OS user the embedded server's tests connect as (another local user than the server's)
OTHER_USER = "nobody"


def need_other_user() -> None:
    """Skip unless this process may act as OTHER_USER (root, runuser, the user exists)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the test connects as another OS user (runuser -u nobody)")
    if shutil.which("runuser") is None:
        pytest.skip("runuser is not installed: cannot act as another OS user")
    try:
        pwd.getpwnam(OTHER_USER)
    except KeyError:
        pytest.skip(f"no OS user {OTHER_USER!r} to connect as")


def connect_as(db_url: str, role: str) -> psycopg.Connection:
    """An autocommit connection to ``db_url`` as ``role`` (rows as dicts)."""
    return psycopg.connect(as_role(db_url, role), autocommit=True, row_factory=dict_row)


def denied(c: psycopg.Connection, query: str, params=None) -> bool:
    """Whether ``query`` fails with insufficient_privilege."""
    try:
        c.execute(query, params)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False
