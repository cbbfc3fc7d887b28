"""Tenant A's key against every endpoint of the OpenAPI document, aimed at tenant B's ids: nothing of
B's comes back, and nothing of B's changes. The API runs as it is deployed (role reco_api)."""

from __future__ import annotations

import re

from psycopg.types.json import Jsonb

from app.db import as_role
from tests.helpers import client_for

B = "bee"
B_USER, B_FEATURE, B_PLAN = "bee-user", "bee-feature", "bee-plan"
B_SCENARIO, B_EXPERIMENT, B_METRIC = "bee-scenario", "bee-experiment", "bee-metric"
#: strings only B's rows hold (never sent in a request): if one comes back, B leaked
SECRETS = ("BEE-NAME", "bee-industry", "0.777", "BEE-DESCRIPTION", "bee-category")
DAY = "2026-11-20T00:00:00Z"

BODIES = {
    ("put", "/v1/users/{user_id}"): {"paid": True},
    ("put", "/v1/features/{feature_id}"): {"name": "mine"},
    ("put", "/v1/plans/{plan_id}"): {"price": 1},
    ("post", "/v1/users:batch"): [{"user_id": B_USER, "paid": True}],
    ("post", "/v1/features:batch"): [{"feature_id": B_FEATURE, "name": "mine"}],
    ("post", "/v1/events"): [{"user_id": B_USER, "feature_id": B_FEATURE, "occurred_at": DAY}],
    ("put", "/v1/scenarios/{name}"): {"overrides": {"mmr_lambda": 0.5}},
    ("put", "/v1/metrics/{name}"): {"event_kind": "x", "agg": "count"},
    ("post", "/v1/experiments"): {"name": B_EXPERIMENT, "variants": [{"name": "a"}, {"name": "b"}]},
}
PARAMS = {"user_id": B_USER, "feature_id": B_FEATURE, "plan_id": B_PLAN, "name": B_EXPERIMENT}


def _fill(path: str) -> str:
    def value(m: re.Match) -> str:
        if m.group(1) == "name":
            return B_SCENARIO if "/scenarios/" in path else B_METRIC if "/metrics/" in path else B_EXPERIMENT
        return PARAMS[m.group(1)]
    return re.sub(r"\{(\w+)\}", value, path)


def _snapshot(conn) -> dict[str, str]:
    """Every row B has, per table (md5 of the rows as text)."""
    tid = conn.execute("SELECT tenant_id FROM reco.tenants WHERE slug = %s", (B,)).fetchone()["tenant_id"]
    tables = [r["relname"] for r in conn.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
           WHERE n.nspname = 'reco' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1""")]
    return {t: conn.execute(f"SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '')"
                            f" AS s FROM reco.{t} x WHERE tenant_id = %s", (tid,)).fetchone()["s"] for t in tables}


def test_a_key_reaches_nothing_of_another_tenant_through_any_endpoint(seeded, db_url):
    c = seeded
    c.execute("SELECT reco.create_tenant(%s)", (B,))
    c.execute("SELECT reco.upsert_features(%s, %s)", (Jsonb([
        {"feature_id": B_FEATURE, "name": "BEE-NAME", "category": "bee-category"},
        {"feature_id": "bee-other", "name": "BEE-NAME 2", "category": "bee-category"}]), B))
    c.execute("SELECT reco.upsert_users(%s, %s)", (Jsonb([
        {"user_id": B_USER, "attributes": {"industry": "bee-industry"}}]), B))
    c.execute("SELECT reco.upsert_plans(%s, %s)", (Jsonb([{"plan_id": B_PLAN, "name": "BEE-NAME", "price": 9}]), B))
    c.execute("SELECT reco.ingest_events(%s, %s)", (Jsonb([
        {"user_id": u, "feature_id": f, "occurred_at": DAY} for u in (B_USER, "bee-2", "bee-3")
        for f in (B_FEATURE, "bee-other")]), B))
    c.execute("SELECT reco.upsert_scenario(%s, '{\"weight_popularity\": 0.777}', 'BEE-DESCRIPTION', %s)",
              (B_SCENARIO, B))
    c.execute("SELECT reco.create_metric(%s, 'bee-kind', 'count', NULL, true, 'BEE-DESCRIPTION', %s)", (B_METRIC, B))
    c.execute("SELECT reco.create_experiment(%s, '[{\"name\": \"a\"}, {\"name\": \"b\"}]',"
              " '{\"scenario\": \"bee-scenario\", \"description\": \"BEE-DESCRIPTION\"}', %s)", (B_EXPERIMENT, B))
    c.execute("SELECT reco.start_experiment(%s, %s)", (B_EXPERIMENT, B))
    c.execute("CALL reco.run_job('all', %s)", (B,))
    before = _snapshot(c)

    calls = 0
    with client_for(as_role(db_url, "reco_api")) as api:
        api.headers["Authorization"] = f"Bearer {c.key}"  # tenant A's (default) key
        paths = api.get("/openapi.json").json()["paths"]
        for path, ops in paths.items():
            if not path.startswith("/v1/"):
                continue
            for method in ops:
                url = _fill(path)
                body = BODIES.get((method, path))
                r = api.request(method.upper(), url, json=body)
                calls += 1
                assert r.status_code < 500, (method, url, r.text)
                for secret in SECRETS:
                    assert secret not in r.text, (method, url, secret, r.text)
                if B_FEATURE not in url and not (body and B_FEATURE in str(body)):
                    assert B_FEATURE not in r.text and "bee-other" not in r.text, (method, url, r.text)
        # the console, with the same key
        api.post("/console/login", data={"key": c.key}, headers={"Origin": "http://testserver"})
        for page in (f"/console/user?id={B_USER}", f"/console/feature?id={B_FEATURE}",
                     f"/console/experiment?name={B_EXPERIMENT}", "/console/experiments", "/console/users",
                     "/console/features", "/console"):
            r = api.get(page)
            calls += 1
            assert r.status_code < 500
            for secret in SECRETS:
                assert secret not in r.text, (page, secret)
    assert calls > 20
    # nothing of B's changed, whatever A's key did with B's ids
    assert _snapshot(c) == before
