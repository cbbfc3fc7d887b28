"""The REST API against a real database: every endpoint's success and error paths, auth, the
feedback loop, erasure, and degradation (statement timeout, database unreachable) with recovery."""

from __future__ import annotations

import hashlib

from tests.helpers import DAY, Proxy, client_for, database_away, error, slow_database, wait_for

# --- auth -------------------------------------------------------------------------------------

def test_requests_without_a_valid_key_get_401_and_no_data(seeded, db_url):
    with client_for(db_url) as c:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                        {"Authorization": f"Bearer {seeded.key}x"}):
            for method, path in (("GET", "/v1/users/U1/recommendations"), ("GET", "/v1/features/a/similar"),
                                 ("GET", "/v1/users/U1/plan"), ("PUT", "/v1/users/U1"), ("POST", "/v1/events"),
                                 ("DELETE", "/v1/users/U1"), ("GET", "/v1/ping")):
                r = c.request(method, path, headers=headers, json={} if method in ("PUT", "POST") else None)
                body = error(r, 401, "unauthorized")
                assert "items" not in r.text and r.headers["www-authenticate"] == "Bearer", (method, path)
                assert body["hint"]
        assert c.get("/v1/ping", headers={"Authorization": f"Bearer {seeded.key}"}).json() == {"tenant": "default"}
        # keys are stored hashed; a revoked key stops working on the next request
        stored = seeded.execute("SELECT key_hash, prefix FROM reco.api_keys").fetchone()
        assert bytes(stored["key_hash"]) == hashlib.sha256(seeded.key.encode()).digest()
        assert seeded.key not in str(seeded.execute("SELECT * FROM reco.api_keys").fetchall())
        seeded.execute("SELECT reco.revoke_api_key(%s)", (stored["prefix"],))
        error(c.get("/v1/ping", headers={"Authorization": f"Bearer {seeded.key}"}), 401, "unauthorized")


def test_a_key_belongs_to_one_tenant(seeded, db_url):
    seeded.execute("SELECT reco.create_tenant('acme')")
    seeded.execute("SELECT reco.upsert_features('[{\"feature_id\": \"only-acme\"}]', 'acme')")
    acme = seeded.execute("SELECT reco.create_api_key('acme') AS k").fetchone()["k"]
    with client_for(db_url) as c:
        r = c.get("/v1/features/only-acme/similar", headers={"Authorization": f"Bearer {acme}"})
        assert r.status_code == 200
        r = c.get("/v1/features/only-acme/similar", headers={"Authorization": f"Bearer {seeded.key}"})
        error(r, 404, "not_found")


# --- serving ----------------------------------------------------------------------------------

def test_recommendations(api, seeded):
    r = api.get("/v1/users/U0/recommendations", params={"k": 3, "explain": "true"},
                headers={"X-Request-ID": "req-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-42"
    body = r.json()
    assert body["request_id"] == "req-42" and body["user_id"] == "U0"
    assert body["variant"] is None and body["degraded"] is False
    assert [i["rank"] for i in body["items"]] == [1, 2, 3]
    assert all({"feature_id", "score", "reasons"} <= set(i) for i in body["items"])
    assert "p" not in {i["feature_id"] for i in body["items"]}  # paid-only, free user
    # the exposures are in the database, in rank order, with the user's segment
    row = seeded.execute("""SELECT f.feature_id FROM reco.exposure_items f WHERE request_id = 'req-42'
                            ORDER BY rank""").fetchall()
    assert [x["feature_id"] for x in row] == [i["feature_id"] for i in body["items"]]
    # without explain: no reasons; exclude_seen leaves out a and b; log=false records nothing
    r = api.get("/v1/users/U0/recommendations", params={"exclude_seen": "true", "log": "false"},
                headers={"X-Request-ID": "req-43"})
    items = r.json()["items"]
    assert items and "reasons" not in items[0] and {"a", "b"}.isdisjoint(i["feature_id"] for i in items)
    assert seeded.execute("SELECT count(*) AS n FROM reco.exposures WHERE request_id = 'req-43'"
                          ).fetchone()["n"] == 0
    # the session boost
    r = api.get("/v1/users/U3/recommendations", params={"recent": "a, b", "explain": True})
    assert any(i["reasons"].get("session", 0) > 0 for i in r.json()["items"])


def test_unknown_user_gets_cold_start_not_404(api):
    r = api.get("/v1/users/never-seen/recommendations", params={"k": 2})
    assert r.status_code == 200 and len(r.json()["items"]) == 2


def test_bad_parameters_get_422_with_field_and_reason(api):
    for params, field in (({"k": 0}, "query.k"), ({"k": 101}, "query.k"), ({"k": "ten"}, "query.k"),
                          ({"explain": "maybe"}, "query.explain"), ({"recent": "x" * 5000}, "query.recent")):
        body = error(api.get("/v1/users/U1/recommendations", params=params), 422, "validation_error")
        assert body["fields"][0]["field"] == field and body["fields"][0]["reason"]
    error(api.get("/v1/users/U1/starter", params={"k": 500}), 422, "validation_error")
    error(api.get("/v1/features/a/similar", params={"k": -1}), 422, "validation_error")
    error(api.get(f"/v1/users/{'u' * 201}/recommendations"), 422, "validation_error")


def test_starter_similar_plan(api):
    starter = api.get("/v1/users/newcomer/starter", params={"explain": True}).json()
    assert len(starter["items"]) == 3 and starter["degraded"] is False
    assert len({i["reasons"]["category"] for i in starter["items"][:2]}) == 2
    similar = api.get("/v1/features/a/similar", params={"k": 2}).json()
    assert similar["feature_id"] == "a" and similar["items"][0]["source"] == "cf"
    assert {i["feature_id"] for i in similar["items"]} <= {"b", "c", "d"}
    body = error(api.get("/v1/features/no-such/similar"), 404, "not_found")
    assert "no-such" in body["message"] and body["hint"] and body["sqlstate"] == "P0002"
    plans = api.get("/v1/users/U1/plan").json()
    assert plans["user_id"] == "U1" and [p["plan_id"] for p in plans["plans"]] == ["free", "pro"]


# --- writes -----------------------------------------------------------------------------------

def test_upserts(api, seeded):
    r = api.put("/v1/users/V1", json={"paid": True, "attributes": {"industry": "media"}})
    assert r.json() == {"id": "V1", "stored": True}
    assert api.put("/v1/users/V1", json={"paid": True}).json() == {"id": "V1", "stored": False}
    user = seeded.execute("SELECT paid, attributes FROM reco.users WHERE user_id = 'V1'").fetchone()
    assert user == {"paid": True, "attributes": {"industry": "media"}}
    body = error(api.put("/v1/users/V1", json={"paid": "perhaps"}), 422, "validation_error")
    assert body["fields"][0]["field"] == "body.paid"
    error(api.put("/v1/users/V1", json={"unknown": 1}), 422, "validation_error")
    error(api.put("/v1/users/V1", content=b"not json", headers={"Content-Type": "application/json"}),
          422, "validation_error")

    assert api.put("/v1/features/e", json={"category": "y", "tags": ["new"]}).json()["stored"]
    body = error(api.put("/v1/features/e", json={"embedding": ["x"]}), 422, "validation_error")
    assert body["fields"][0]["field"].startswith("body.embedding")
    assert api.put("/v1/plans/team", json={"price": 99, "quota": 5000, "overage_price": 0.01}).json()["stored"]
    error(api.put("/v1/plans/team", json={"price": -1}), 422, "validation_error")

    report = api.post("/v1/users:batch", json=[{"user_id": "V2"}, {"user_id": "V3", "paid": False}]).json()
    assert report == {"accepted": 2, "duplicates": 0, "rejected": []}
    report = api.post("/v1/features:batch", json=[{"feature_id": "f1", "name": "F1"}]).json()
    assert report["accepted"] == 1
    # a bad row is reported, not the whole batch refused (issue 13)
    assert api.post("/v1/users:batch", json=[{"paid": True}]).json() == {  # no user_id
        "accepted": 0, "duplicates": 0, "rejected": [{"index": 0, "field": "user_id", "reason": "Field required"}]}


def _accepted_counter(api) -> float:
    line = next((x for x in api.get("/metrics").text.splitlines()
                 if x.startswith('reco_ingest_events_total{result="accepted"}')), "- 0")
    return float(line.rsplit(" ", 1)[1])


def test_events(api, seeded):
    accepted_before = _accepted_counter(api)  # the counter is the test process's, shared by every test
    one = {"event_id": "e1", "user_id": "W1", "feature_id": "a", "occurred_at": DAY}
    assert api.post("/v1/events", json=one).json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    batch = [one, {"user_id": "W1", "feature_id": "nope", "occurred_at": DAY},
             {"user_id": "W1", "feature_id": "b", "occurred_at": "yesterday"},
             {"user_id": "W1", "feature_id": "b", "occurred_at": DAY}]
    report = api.post("/v1/events", json=batch).json()
    assert report["accepted"] == 1 and report["duplicates"] == 1
    assert [(r["index"], r["field"]) for r in report["rejected"]] == [(1, "feature_id"), (2, "occurred_at")]
    assert seeded.execute("SELECT count(*) AS n FROM reco.events e JOIN reco.users u USING (tenant_id, user_key) "
                          "WHERE u.user_id = 'W1'").fetchone()["n"] == 2
    body = error(api.post("/v1/events", json=[one] * 10_001), 422, "validation_error")
    assert "10,000" in body["message"]
    error(api.post("/v1/events", json="a string"), 422, "validation_error")
    assert _accepted_counter(api) - accepted_before == 2


def test_feedback_loop_exposure_then_use_moves_the_bandit(api, seeded):
    def arm(feature: str) -> tuple[float, float] | None:
        row = seeded.execute("""SELECT alpha, beta FROM reco.bandit_arms b
                                JOIN reco.features f USING (tenant_id, feature_key) WHERE f.feature_id = %s""",
                             (feature,)).fetchone()
        return (row["alpha"], row["beta"]) if row else None

    shown = api.get("/v1/users/U3/recommendations", params={"k": 2, "exclude_seen": True}).json()["items"]
    feature = shown[0]["feature_id"]
    seeded.execute("CALL reco.run_job('bandit')")  # counts the exposure as a failure
    before = arm(feature)
    assert before is not None and before[1] >= 2
    when = seeded.execute("SELECT (now() + interval '1 minute')::text AS t").fetchone()["t"]
    assert api.post("/v1/events", json={"user_id": "U3", "feature_id": feature, "occurred_at": when}
                    ).json()["accepted"] == 1
    after = arm(feature)
    assert after == (before[0] + 1, before[1] - 1)  # a failure became a success, in the ingest call


def test_erase_user(api, seeded):
    api.get("/v1/users/U1/recommendations")  # exposures too
    body = api.delete("/v1/users/U1").json()
    assert body["user_id"] == "U1" and body["erased"]["events"] == 3 and body["erased"]["interactions"] == 3
    assert body["erased"]["exposures"] >= 1 and body["erased"]["users"] == 1
    assert body["erased"]["user_vectors"] == 1 and body["erased"]["usercf_scores"] == 1
    left = seeded.execute("""SELECT (SELECT count(*) FROM reco.users WHERE user_id = 'U1')
        + (SELECT count(*) FROM reco.exposures x WHERE NOT EXISTS (SELECT 1 FROM reco.users u
               WHERE u.tenant_id = x.tenant_id AND u.user_key = x.user_key))
        + (SELECT count(*) FROM reco.usercf_scores x WHERE NOT EXISTS (SELECT 1 FROM reco.users u
               WHERE u.tenant_id = x.tenant_id AND u.user_key = x.user_key)) AS n""").fetchone()["n"]
    assert left == 0
    error(api.delete("/v1/users/U1"), 404, "not_found")
    assert api.get("/v1/users/U1/recommendations").status_code == 200  # a new, cold user


def test_probes_metrics_and_docs(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    api.get("/v1/users/U1/recommendations")
    api.get("/v1/users/U1/recommendations", params={"k": 0})
    text = api.get("/metrics").text
    assert 'reco_http_requests_total{method="GET",route="/v1/users/{user_id}/recommendations",status="200"}' in text
    assert 'status="422"' in text and "reco_http_request_duration_seconds_bucket" in text
    assert "reco_db_pool_connections" in text
    spec = api.get("/openapi.json").json()
    rec = spec["paths"]["/v1/users/{user_id}/recommendations"]["get"]
    assert {p["name"] for p in rec["parameters"]} == {"user_id", "k", "exclude_seen", "recent", "scenario", "explain",
                                                     "log"}
    assert rec["responses"]["200"]["content"]["application/json"]["schema"]
    assert rec["security"] == [{"bearer": []}] and spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path in ("/v1/users/{user_id}/starter", "/v1/features/{feature_id}/similar", "/v1/users/{user_id}/plan",
                 "/v1/users/{user_id}", "/v1/features/{feature_id}", "/v1/plans/{plan_id}", "/v1/users:batch",
                 "/v1/features:batch", "/v1/events", "/healthz", "/readyz", "/metrics"):
        assert path in spec["paths"], path
    assert api.get("/docs").status_code == 200


# --- degradation ------------------------------------------------------------------------------

def degraded_count(metrics: str) -> float:
    line = 'reco_degraded_responses_total{route="/v1/users/{user_id}/recommendations"} '
    return next((float(x.removeprefix(line)) for x in metrics.splitlines() if x.startswith(line)), 0.0)


def test_slow_database_degrades_then_recovers(seeded, db_url):
    with client_for(db_url, api_timeout_ms=12_345, api_write_timeout_ms=23_456) as c:
        # the pools' connections carry the statement timeouts of the settings
        st = c.app.state.reco
        assert c.portal.call(st.read, "SELECT current_setting('statement_timeout')", ()) == "12345ms"
        assert c.portal.call(st.write, "SELECT current_setting('statement_timeout')", (), "a test") == "23456ms"
    with client_for(db_url) as c:  # generous timeouts: the statements past them are cancelled by slow_database
        c.headers["Authorization"] = f"Bearer {seeded.key}"
        assert c.get("/v1/users/U1/recommendations").json()["degraded"] is False
        before = degraded_count(c.get("/metrics").text)  # the counter is the process's: other tests add to it
        st = c.app.state.reco
        wait_for(lambda: st.popular.get("default"))  # the popular list is known from then on
        with slow_database(db_url, "reco.features"):  # past the statement timeout: a table locked
            r = c.get("/v1/users/U1/recommendations", params={"k": 2})
            assert r.status_code == 200
            body = r.json()
            assert body["degraded"] is True and len(body["items"]) == 2
            assert [i["feature_id"] for i in body["items"]] == st.popular["default"][:2]
            assert c.get("/v1/features/a/similar").json()["degraded"] is True
            assert c.get("/v1/users/U1/starter").json()["degraded"] is True
            # writes fail loudly, never silently
            body = error(c.post("/v1/events", json={"user_id": "U1", "feature_id": "a", "occurred_at": DAY}),
                         503, "timeout")
            assert "nothing was stored" in body["hint"].lower()
        assert c.get("/v1/users/U1/recommendations").json()["degraded"] is False  # recovered
        assert degraded_count(c.get("/metrics").text) == before + 1
    # the event that failed was not stored
    assert seeded.execute("SELECT count(*) AS n FROM reco.events e JOIN reco.users u USING (tenant_id, user_key)"
                          " WHERE u.user_id = 'U1'").fetchone()["n"] == 3


def test_unreachable_database_degrades_then_recovers(seeded, db_url):
    proxy = Proxy(db_url)
    with client_for(proxy.url) as c:
        c.headers["Authorization"] = f"Bearer {seeded.key}"
        assert c.get("/v1/users/U1/recommendations").json()["degraded"] is False
        st = c.app.state.reco
        wait_for(lambda: st.popular.get("default"))
        database_away(c, proxy)
        for _ in range(3):  # broken connections, then no connection at all
            r = c.get("/v1/users/U1/recommendations", params={"k": 3})
            assert r.status_code == 200 and r.json()["degraded"] is True
        assert c.get("/readyz").status_code == 503
        assert error(c.put("/v1/users/U9", json={"paid": True}), 503, "database_unavailable"
                     )["hint"].startswith("Nothing was stored.")
        # a read stores nothing anyway: its 503 does not say so
        assert "stored" not in error(c.get("/v1/users/U1/plan"), 503, "database_unavailable")["hint"]
        # a key never seen working cannot be checked now: no data for it
        error(c.get("/v1/users/U1/recommendations", headers={"Authorization": "Bearer pgr_unknown"}),
              503, "database_unavailable")
        proxy.restore()
        wait_for(lambda: c.get("/v1/users/U1/recommendations").json()["degraded"] is False)
        assert c.get("/readyz").status_code == 200
        assert c.put("/v1/users/U9", json={"paid": True}).json()["stored"] is True
