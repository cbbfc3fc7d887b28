"""The REST API's hardening (issues 13 and 14): docs served offline and / redirected, bounded input
(body size while reading, per-field limits, NUL, NaN, deep nesting), every error in the documented
shape, batches answered row by row, and faults (stale pooled connections after a restart,
serialization failures and deadlocks retried, revoked or stale keys refused in degraded mode)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
from pathlib import Path

import psycopg
from fastapi import FastAPI
from psycopg import sql

from app.api.limits import MAX_DIMENSIONS, MAX_JSON_BYTES, BodyLimit
from tests.helpers import (
    DAY,
    Proxy,
    app_for,
    client_for,
    database_away,
    error,
    metric,
    shifted_api_clock,
    terminate_api_connections,
    wait_for,
)

# --- docs, offline --------------------------------------------------------------------------

def test_docs_load_nothing_from_the_network(api):
    page = api.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, no fonts
    assert '"validatorUrl": null' in page.text
    js = api.get("/docs/static/swagger-ui-bundle.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"] and len(js.content) > 500_000
    assert b"SwaggerUIBundle" in js.content
    # Swagger UI 5 (OpenAPI 3.1, which FastAPI writes); 4.x cannot render it
    assert api.get("/openapi.json").json()["openapi"].startswith("3.1")
    assert api.get("/docs/static/swagger-ui.css").status_code == 200
    assert api.get("/docs/static/favicon.png").headers["content-type"] == "image/png"
    # only the listed files
    error(api.get("/docs/static/..%2F..%2Fsettings.py"), 404, "not_found")
    error(api.get("/docs/static/redoc.standalone.js"), 404, "not_found")


def test_swagger_ui_is_version_5():
    from app.api.docs import STATIC

    head = (STATIC / "swagger-ui-bundle.js").read_bytes()
    assert b'"5.' in head, "Swagger UI 5 renders OpenAPI 3.1; 4.x shows a blank page for it"


def test_root_and_redoc_redirect(api, seeded, db_url):
    r = api.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/console"  # the console exists
    r = api.get("/redoc", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/docs"
    app = app_for(db_url)

    @app.get("/console", include_in_schema=False)
    async def console() -> dict:
        return {}

    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        r = c.get("/", follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "/console"


def test_docs_are_counted_under_their_route(api):
    before = {p: metric(api, "reco_http_requests_total", route=p, method="GET", status="200")
              for p in ("/docs", "/openapi.json")}
    unmatched = metric(api, "reco_http_requests_total", route="unmatched", method="GET", status="200")
    api.get("/docs")
    api.get("/openapi.json")
    for path, n in before.items():
        assert metric(api, "reco_http_requests_total", route=path, method="GET", status="200") == n + 1
    assert metric(api, "reco_http_requests_total", route="unmatched", method="GET", status="200") == unmatched


# --- every error in the documented shape ----------------------------------------------------------

def test_routing_errors_have_the_documented_shape(api):
    body = error(api.get("/no/such/route"), 404, "not_found")
    assert "/no/such/route" in body["message"] and "/docs" in body["hint"]
    r = api.delete("/healthz")
    body = error(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"] and "GET" in body["hint"]
    body = error(api.put("/v1/users/V1", content=b'{"paid": tru', headers={"Content-Type": "application/json"}),
                 422, "validation_error")
    assert body["fields"][0]["field"] == "body" and "not valid JSON" in body["fields"][0]["reason"]
    error(api.post("/v1/users:batch", json={"user_id": "x"}), 422, "validation_error")  # not an array
    for r in (api.get("/nope"), api.delete("/healthz"), api.post("/v1/events", content=b"[")):
        assert "detail" not in r.json() and set(r.json()) == {"error"}


def test_server_errors_have_the_documented_shape_and_are_logged(seeded, db_url, caplog):
    caplog.set_level(logging.INFO, logger="pgreco")
    seeded.execute("ALTER FUNCTION reco.api_plan(text, text, text) RENAME TO api_plan_gone")
    app = app_for(db_url)

    @app.get("/boom", include_in_schema=False)
    async def boom() -> dict:
        raise RuntimeError("a bug")

    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {seeded.key}"
        # a function missing: the schema is older than the code (503 with the fix, logged)
        r = c.get("/v1/users/U1/plan", headers={"X-Request-ID": "plan-0"})
        body = error(r, 503, "not_migrated")
        assert body["sqlstate"] == "42883" and "reco migrate" in body["hint"]
        # a function failing in a way the mapping does not know: 500, no internals in the answer
        seeded.execute("""CREATE FUNCTION reco.api_plan(text, text, text) RETURNS text LANGUAGE plpgsql AS $$
                          BEGIN RAISE EXCEPTION 'api_plan broke'; END $$""")
        seeded.execute("GRANT EXECUTE ON FUNCTION reco.api_plan(text, text, text) TO reco_api")
        r = c.get("/v1/users/U1/plan", headers={"X-Request-ID": "plan-1"})
        body = error(r, 500, "database_error")
        assert body["message"] == "unexpected database error" and body["sqlstate"] == "P0001"
        r = c.get("/boom", headers={"X-Request-ID": "boom-1"})
        body = error(r, 500, "internal_error")
        assert "boom-1" in body["hint"] and r.headers["x-request-id"] == "boom-1"
    logged = [(rec.levelname, rec.getMessage()) for rec in caplog.records if rec.name == "pgreco.api"]
    assert any(level == "WARNING" and "request_id=plan-0" in m and "api_plan" in m for level, m in logged), logged
    assert any(level == "ERROR" and "request_id=plan-1" in m and "api_plan" in m for level, m in logged), logged
    assert any(level == "ERROR" and "request_id=boom-1" in m for level, m in logged), logged


def test_deep_nesting_is_a_4xx_in_the_documented_shape(api, seeded):
    deep = b"[" * 100_000 + b"]" * 100_000
    for method, path in (("PUT", "/v1/users/V1"), ("POST", "/v1/events"), ("POST", "/v1/users:batch")):
        r = api.request(method, path, content=deep, headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500 and set(r.json()) == {"error"}, (path, r.text[:200])
    nested: dict = {"x": 1}
    for _ in range(30):
        nested = {"n": nested}
    body = error(api.put("/v1/users/V1", json={"attributes": nested}), 422, "validation_error")
    assert body["fields"][0]["field"] == "body.attributes" and "nested too deeply" in body["fields"][0]["reason"]
    good = {"user_id": "D1", "feature_id": "a", "occurred_at": DAY}
    report = api.post("/v1/events", json=[good, {**good, "user_id": "D2", "props": nested}]).json()
    assert report["accepted"] == 1
    assert report["rejected"][0]["index"] == 1 and report["rejected"][0]["field"].startswith("props")


# --- the body's size ------------------------------------------------------------------------

def test_body_over_the_limit_gets_413_with_the_limit(seeded, db_url):
    with client_for(db_url, api_max_body_bytes=1000) as c:
        c.headers["Authorization"] = f"Bearer {seeded.key}"
        rows = [{"user_id": f"L{i}", "feature_id": "a", "occurred_at": DAY} for i in range(50)]
        body = error(c.post("/v1/events", json=rows), 413, "body_too_large")  # Content-Length
        assert "1,000" in body["message"] and body["fields"] == [{"field": "body", "reason": "at most 1000 bytes"}]

        def chunks():  # no Content-Length: counted while read
            data = json.dumps(rows).encode()
            for i in range(0, len(data), 100):
                yield data[i:i + 100]

        r = c.post("/v1/events", content=chunks(), headers={"Content-Type": "application/json"})
        assert "content-length" not in {k.lower() for k in r.request.headers}
        error(r, 413, "body_too_large")
        assert c.post("/v1/events", json=rows[:2]).json()["accepted"] == 2  # below it: stored
        # the 413 answered before the routing is counted under the route
        assert metric(c, "reco_http_requests_total", route="/v1/events", method="POST", status="413") >= 2
    # nothing of the refused bodies was stored
    assert seeded.execute("SELECT count(*) AS n FROM reco.users WHERE user_id LIKE 'L%'").fetchone()["n"] == 2


def test_body_limit_stops_reading_at_the_limit():
    """The middleware stops pulling the body as soon as it passes the limit: a 10 MB upload in
    64 KiB chunks against a 100 KiB limit is read for 2 chunks, then 413."""
    pulled = 0

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 65536, "more_body": pulled < 160}

    app = FastAPI()

    @app.post("/sink")
    async def sink(body: dict) -> dict:
        return {}

    from starlette.exceptions import HTTPException as StarletteHTTPException

    from app.api.errors import http_error_handler

    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    limited = BodyLimit(app, 100 * 1024)
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/sink", "raw_path": b"/sink", "root_path": "",
             "query_string": b"", "headers": [(b"content-type", b"application/json")], "http_version": "1.1",
             "scheme": "http", "server": ("t", 80), "client": ("c", 1), "app": app}
    asyncio.run(limited(scope, receive, send))
    assert sent[0]["status"] == 413 and pulled == 2
    assert json.loads(sent[1]["body"])["error"]["code"] == "body_too_large"


# --- per-field limits -------------------------------------------------------------------------

def test_field_limits(api, seeded):
    def field_error(resp) -> str:
        body = error(resp, 422, "validation_error")
        return body["fields"][0]["field"]

    big = {f"k{i}": "x" * 100 for i in range(MAX_JSON_BYTES // 100)}
    assert field_error(api.put("/v1/users/V1", json={"attributes": big})) == "body.attributes"
    assert field_error(api.put("/v1/features/e", json={"tags": [f"t{i}" for i in range(51)]})) == "body.tags"
    assert field_error(api.put("/v1/features/e", json={"tags": ["t" * 101]})).startswith("body.tags")
    assert field_error(api.put("/v1/features/e", json={"name": "n" * 201})) == "body.name"
    assert field_error(api.put("/v1/features/e", json={"description": "d" * 4001})) == "body.description"
    assert field_error(api.put("/v1/features/e", json={"embedding": [0.5] * (MAX_DIMENSIONS + 1)})) == \
        "body.embedding"
    assert field_error(api.put(f"/v1/plans/{'p' * 201}", json={"price": 1})) == "path.plan_id"
    # a large props is refused for its event only
    good = {"user_id": "F1", "feature_id": "a", "occurred_at": DAY}
    report = api.post("/v1/events", json=[{**good, "props": {"blob": "x" * (MAX_JSON_BYTES + 1)}}, good]).json()
    assert report["accepted"] == 1 and [(r["index"], r["field"]) for r in report["rejected"]] == [(0, "props")]
    report = api.post("/v1/events", json=[{**good, "user_id": "u" * 201}]).json()
    assert report["rejected"][0]["field"] == "user_id"
    # nothing oversized was stored
    assert seeded.execute("SELECT count(*) AS n FROM reco.features WHERE feature_id = 'e'").fetchone()["n"] == 0


def test_embedding_length_is_the_tenants(api, seeded):
    assert api.put("/v1/features/e1", json={"embedding": [1, 0, 0]}).json()["stored"]
    body = error(api.put("/v1/features/e2", json={"embedding": [1, 0]}), 422, "validation_error")
    assert body["fields"][0]["field"] == "body.embedding" and "3" in body["fields"][0]["reason"]
    report = api.post("/v1/features:batch", json=[{"feature_id": "e3", "embedding": [0, 1, 0]},
                                                  {"feature_id": "e4", "embedding": [0, 1, 0, 0]},
                                                  {"feature_id": "e5", "name": "no vector"}]).json()
    assert report["accepted"] == 2 and [(r["index"], r["field"]) for r in report["rejected"]] == [(1, "embedding")]
    # another tenant has its own
    seeded.execute("SELECT reco.create_tenant('other')")
    other = seeded.execute("SELECT reco.create_api_key('other') AS k").fetchone()["k"]
    r = api.put("/v1/features/o1", json={"embedding": [1, 2]}, headers={"Authorization": f"Bearer {other}"})
    assert r.json()["stored"] is True


# --- NUL and NaN --------------------------------------------------------------------------------

def test_nul_in_ids_and_fields_is_a_422_not_a_500(api, seeded):
    for method, path in (("GET", "/v1/users/a%00b/recommendations"), ("GET", "/v1/users/a%00b/starter"),
                         ("GET", "/v1/features/a%00b/similar"), ("GET", "/v1/users/a%00b/plan"),
                         ("PUT", "/v1/users/a%00b"), ("PUT", "/v1/features/a%00b"), ("PUT", "/v1/plans/a%00b"),
                         ("DELETE", "/v1/users/a%00b")):
        r = api.request(method, path, json={"price": 1} if "plans" in path else ({} if method == "PUT" else None))
        body = error(r, 422, "validation_error")
        field = body["fields"][0]
        assert field["field"].startswith("path.") and "NUL" in field["reason"], (method, path, body)
    body = error(api.get("/v1/users/U1/recommendations", params={"recent": "a\x00"}), 422, "validation_error")
    assert body["fields"][0]["field"] == "query.recent"
    body = error(api.put("/v1/users/V1", json={"attributes": {"industry": "a\x00"}}), 422, "validation_error")
    assert body["fields"][0]["field"] == "body.attributes" and "NUL" in body["fields"][0]["reason"]
    error(api.put("/v1/features/e", json={"tags": ["a\x00"]}), 422, "validation_error")


def test_nul_or_nan_in_one_event_rejects_that_event_only(api, seeded):
    good = {"user_id": "N1", "feature_id": "a", "occurred_at": DAY}
    raw = ("[" + ",".join([
        json.dumps({**good, "event_id": "n0"}),
        json.dumps({**good, "event_id": "n1", "user_id": "N\u0000"}),
        '{"user_id": "N1", "feature_id": "b", "occurred_at": "2026-10-15T00:00:00Z", "props": {"x": NaN}}',
        '{"user_id": "N1", "feature_id": "c", "occurred_at": Infinity}',
        json.dumps({**good, "event_id": "n4", "feature_id": "nope"}),
        json.dumps({**good, "event_id": "n5", "feature_id": "d"}),
        json.dumps({**good, "event_id": "n6", "props": {"k\u0000": 1}}),
        "42",
    ]) + "]").encode()
    report = api.post("/v1/events", content=raw, headers={"Content-Type": "application/json"}).json()
    assert report["accepted"] == 2 and report["duplicates"] == 0
    assert [(r["index"], r["field"]) for r in report["rejected"]] == [
        (1, "user_id"), (2, "props.x"), (3, "occurred_at"), (4, "feature_id"), (6, "props.k\x00"), (7, "(row)")]
    assert "NUL" in report["rejected"][0]["reason"] and "NaN" in report["rejected"][1]["reason"]
    assert "unknown feature" in report["rejected"][3]["reason"]  # the database's, at the request's index
    stored = seeded.execute("""SELECT e.event_id FROM reco.events e JOIN reco.users u USING (tenant_id, user_key)
                               WHERE u.user_id = 'N1' ORDER BY 1""").fetchall()
    assert [r["event_id"] for r in stored] == ["n0", "n5"]
    # one event alone is answered with the report too
    one = b'{"user_id": "N2", "feature_id": "a", "occurred_at": "2026-10-15T00:00:00Z", "props": {"x": -Infinity}}'
    report = api.post("/v1/events", content=one, headers={"Content-Type": "application/json"}).json()
    assert report["accepted"] == 0 and report["rejected"][0]["index"] == 0


def test_nan_is_not_a_number_in_the_models(api):
    for path, raw in (("/v1/plans/p1", b'{"price": NaN}'), ("/v1/plans/p1", b'{"price": 1, "overage_price": Infinity}'),
                      ("/v1/features/e", b'{"embedding": [1, NaN]}')):
        body = error(api.put(path, content=raw, headers={"Content-Type": "application/json"}), 422, "validation_error")
        assert body["fields"][0]["field"].startswith("body.")


# --- batches row by row ---------------------------------------------------------------------------

def test_users_batch_stores_the_good_rows_and_reports_the_bad(api, seeded):
    rows = [{"user_id": "B0", "attributes": {"industry": "media"}}, {"user_id": "B\u00001"},
            {"user_id": "B2", "attributes": "not an object"}, {"user_id": "B3", "paid": "maybe"},
            {"user_id": "B4", "unknown": 1}, "not a row", {"user_id": "B6", "paid": True},
            {"user_id": "B7", "attributes": {"blob": "x" * MAX_JSON_BYTES}}]
    report = api.post("/v1/users:batch", json=rows).json()
    assert report["accepted"] == 2 and report["duplicates"] == 0
    assert [(r["index"], r["field"]) for r in report["rejected"]] == [
        (1, "user_id"), (2, "attributes"), (3, "paid"), (4, "unknown"), (5, "(row)"), (7, "attributes")]
    assert all(r["reason"] for r in report["rejected"])
    stored = seeded.execute("SELECT user_id, paid FROM reco.users WHERE user_id LIKE 'B%' ORDER BY 1").fetchall()
    assert [(r["user_id"], r["paid"]) for r in stored] == [("B0", False), ("B6", True)]
    # features too, the database's rejections merged at the request's indexes
    report = api.post("/v1/features:batch", json=[{"feature_id": "g0"}, {"feature_id": "g1", "tags": "x"},
                                                  {"feature_id": " "}, {"feature_id": "g3"}]).json()
    assert report["accepted"] == 2
    assert [(r["index"], r["field"]) for r in report["rejected"]] == [(1, "tags"), (2, "feature_id")]


def test_a_batch_with_only_bad_rows_still_checks_the_key(seeded, db_url):
    with client_for(db_url) as c:
        r = c.post("/v1/users:batch", json=[{"paid": True}], headers={"Authorization": "Bearer pgr_nope"})
        error(r, 401, "unauthorized")
        r = c.post("/v1/events", json=[42], headers={"Authorization": "Bearer pgr_nope"})
        error(r, 401, "unauthorized")


# --- faults -------------------------------------------------------------------------------------

def test_dead_pooled_connections_cost_no_request(api, seeded):
    """What a database restart does to the pools (every idle connection dies): the next requests
    all succeed, reads not degraded, writes stored: dead connections are replaced before use."""
    for i in range(3):
        assert api.get("/v1/users/U1/recommendations").json()["degraded"] is False
        assert api.put(f"/v1/users/R{i}", json={"paid": True}).status_code == 200
    stale = metric(api, "reco_db_stale_connections_total", pool="reads")
    assert terminate_api_connections(seeded) >= 2  # and their backends have exited
    for i in range(5):
        r = api.get("/v1/users/U1/recommendations")
        assert r.status_code == 200 and r.json()["degraded"] is False
        assert api.put(f"/v1/users/S{i}", json={"paid": True}).json()["stored"] is True
        assert api.post("/v1/events", json={"user_id": f"S{i}", "feature_id": "a", "occurred_at": DAY}
                        ).json()["accepted"] == 1
    assert metric(api, "reco_db_stale_connections_total", pool="reads") > stale
    assert api.get("/readyz").status_code == 200


def test_serialization_failures_and_deadlocks_are_retried(api, seeded, flaky):
    retried = {s: metric(api, "reco_db_retries_total", sqlstate=s) for s in ("40001", "40P01")}
    flaky(2)  # a serialization failure, then a deadlock, then it works
    assert api.put("/v1/users/T1", json={"paid": True}).json() == {"id": "T1", "stored": True}
    flaky(2)
    assert api.post("/v1/events", json={"user_id": "T2", "feature_id": "a", "occurred_at": DAY}).json()["accepted"] == 1
    assert metric(api, "reco_db_retries_total", sqlstate="40001") == retried["40001"] + 2
    assert metric(api, "reco_db_retries_total", sqlstate="40P01") == retried["40P01"] + 2
    flaky(3)  # more failures than tries: 503, nothing stored
    body = error(api.put("/v1/users/T3", json={"paid": True}), 503, "retry")
    assert body["sqlstate"] in ("40001", "40P01")
    assert seeded.execute("SELECT count(*) AS n FROM reco.users WHERE user_id = 'T3'").fetchone()["n"] == 0


def test_revoked_key_gets_no_degraded_answer(seeded, db_url):
    proxy = Proxy(db_url)
    with client_for(proxy.url, api_popular_refresh=3600) as c:
        c.headers["Authorization"] = f"Bearer {seeded.key}"
        assert c.get("/v1/users/U1/recommendations").json()["degraded"] is False
        st = c.app.state.reco
        wait_for(lambda: st.popular.get("default"))
        prefix = seeded.execute("SELECT prefix FROM reco.api_keys").fetchone()["prefix"]
        seeded.execute("SELECT reco.revoke_api_key(%s)", (prefix,))
        error(c.get("/v1/users/U1/recommendations"), 401, "unauthorized")  # the database says so ...
        database_away(c, proxy)
        # ... and the API forgot the key: while the database is away it gets nothing
        error(c.get("/v1/users/U1/recommendations"), 503, "database_unavailable")


def test_revocation_reaches_the_key_cache_without_a_request(seeded, db_url):
    proxy = Proxy(db_url)
    other = seeded.execute("SELECT reco.create_api_key('default', 'other') AS k").fetchone()["k"]
    with client_for(proxy.url, api_popular_refresh=0.2) as c:
        for key in (seeded.key, other):
            assert c.get("/v1/users/U1/recommendations", headers={"Authorization": f"Bearer {key}"}
                         ).json()["degraded"] is False
        st = c.app.state.reco
        wait_for(lambda: st.popular.get("default") and len([s for s in st.tenants.values() if s]) == 2)
        seeded.execute("SELECT reco.revoke_api_key(%s)", (seeded.key[:12],))
        wait_for(lambda: len(st.tenants) == 1)  # re-checked by the refresh loop
        database_away(c, proxy)
        error(c.get("/v1/users/U1/recommendations", headers={"Authorization": f"Bearer {seeded.key}"}),
              503, "database_unavailable")
        r = c.get("/v1/users/U1/recommendations", headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 200 and r.json()["degraded"] is True


def test_a_key_not_confirmed_recently_gets_no_degraded_answer(seeded, db_url, monkeypatch):
    proxy = Proxy(db_url)
    clock = shifted_api_clock(monkeypatch)  # the key's age moves when the test says so
    with client_for(proxy.url, api_key_ttl=60.0, api_popular_refresh=3600) as c:
        c.headers["Authorization"] = f"Bearer {seeded.key}"
        assert c.get("/v1/users/U1/recommendations").json()["degraded"] is False
        st = c.app.state.reco
        wait_for(lambda: st.popular.get("default"))
        assert c.get("/v1/users/U1/recommendations").json()["degraded"] is False  # confirmed now
        database_away(c, proxy)
        assert c.get("/v1/users/U1/recommendations").json()["degraded"] is True  # confirmed within the TTL
        clock.shift(61.0)
        error(c.get("/v1/users/U1/recommendations"), 503, "database_unavailable")  # not any more
        proxy.restore()
        wait_for(lambda: c.get("/v1/users/U1/recommendations").status_code == 200)


def test_a_database_restart_costs_no_request_once_it_is_back(tmp_path):
    """A real restart (pg_ctl stop, start) of an embedded server of this test's own (the shared
    test server is not touched): every request after the server is back succeeds."""
    from app.embedded import EmbeddedServer
    from app.migrate import migrate

    root = Path(tempfile.mkdtemp(prefix="reco-restart-"))
    server = EmbeddedServer(root, ephemeral=True)
    try:
        server.start()
        with psycopg.connect(server.url(), autocommit=True) as c:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("reco")))
        url = server.url("reco")
        migrate(url)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("""SELECT reco.upsert_features('[{"feature_id": "a"}, {"feature_id": "b"}]')""")
            key = c.execute("SELECT reco.create_api_key('default')").fetchone()[0]
        with client_for(url) as api_client:
            api_client.headers["Authorization"] = f"Bearer {key}"
            assert api_client.put("/v1/users/U1", json={"paid": False}).json()["stored"] is True
            assert api_client.get("/v1/users/U1/recommendations").json()["degraded"] is False
            server.stop()
            server.start()
            for i in range(4):
                assert api_client.put(f"/v1/users/W{i}", json={"paid": True}).json()["stored"] is True
                r = api_client.get("/v1/users/U1/recommendations")
                assert r.status_code == 200 and r.json()["degraded"] is False
                assert api_client.post("/v1/events", json={"user_id": "U1", "feature_id": "a",
                                                           "occurred_at": DAY}).status_code == 200
            assert api_client.get("/readyz").status_code == 200
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
