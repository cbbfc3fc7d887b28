"""The web console (/console) server-side, through FastAPI's TestClient against a real database with
generated demo data: auth (login form, session cookie, tenant isolation, revocation, no data without
a key), every page's content, escaping of client data, bounds, static files, and the reco.console_*
SQL functions an analyst runs directly.

The data helpers (seed_demo, seed_experiment, console_app) are in tests/helpers.py: the browser tests
use them too."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

pytest.importorskip("jinja2", reason="the console needs jinja2 (pip install -e '.[test]')")

from app.console import auth, data, render, views  # noqa: E402
from tests.helpers import (  # noqa: E402
    XSS_FEATURE,
    XSS_NAME,
    XSS_USER,
    console_app,
    database,
    form_token,
    login,
    post_login,
    seed_demo,
    seed_experiment,
)

pytestmark = pytest.mark.usefixtures("patient_console")


@pytest.fixture(scope="module")
def world(server_url, template_db, tmp_path_factory) -> Iterator[dict]:
    """One database for the module (the tests read it; those that change something make their own keys
    and tenants): demo data, an experiment, hostile ids and names, a second tenant."""
    for url in database(server_url, template_db):
        key = seed_demo(url, tmp_path_factory.mktemp("console-demo"), users=150, days=30)
        seed_experiment(url, key, users=100)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            conn.execute("SELECT reco.upsert_features(%s)", (Jsonb([
                {"feature_id": XSS_FEATURE, "name": XSS_NAME, "category": "</script><b>"}]),))
            day = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
            conn.execute("SELECT reco.ingest_events(%s)", (Jsonb(
                [{"event_id": f"x{i}", "user_id": XSS_USER, "feature_id": f, "occurred_at": day, "success": True}
                 for i, f in enumerate([XSS_FEATURE, "background-removal", XSS_FEATURE])]
                + [{"event_id": f"many{i}", "user_id": "many", "feature_id": "background-removal",
                    "occurred_at": (datetime.now(UTC) - timedelta(hours=i + 1)).strftime("%Y-%m-%dT%H:%M:%SZ")}
                   for i in range(60)]),))
            conn.execute("SELECT reco.create_tenant('other')")
            conn.execute("SELECT reco.upsert_features(%s, 'other')", (Jsonb([{"feature_id": "secret-feature"}]),))
            conn.execute("SELECT reco.ingest_events(%s, 'other')", (Jsonb([
                {"user_id": "secret-user", "feature_id": "secret-feature", "occurred_at": day}]),))
            other = conn.execute("SELECT reco.create_api_key('other', 'other')").fetchone()["create_api_key"]
            user = conn.execute("SELECT user_id FROM reco.users u JOIN reco.interactions i USING (tenant_id, user_key)"
                                " WHERE u.tenant_id = 1 AND u.user_id LIKE 'U%%' GROUP BY user_id"
                                " ORDER BY count(*) DESC, user_id LIMIT 1").fetchone()["user_id"]
        yield {"url": url, "key": key, "other": other, "user": user}


@pytest.fixture
def anon(world) -> Iterator[TestClient]:
    with TestClient(console_app(world["url"]), follow_redirects=False) as client:
        yield client


def sessions(url: str) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM reco.console_sessions ORDER BY session_id").fetchall()


@pytest.fixture
def web(world, anon) -> TestClient:
    login(anon, world["key"])
    return anon


def charts(html: str) -> dict[str, dict]:
    """The chart specifications a page carries (what console.js draws)."""
    out = {}
    for m in re.finditer(r'<figure class="chart" id="chart-([^"]+)".*?<script type="application/json" '
                         r'class="chart-data">(.*?)</script>', html, re.S):
        out[m.group(1)] = json.loads(m.group(2))
    return out


PAGES = ["/console", "/console/users", "/console/user?id=U1", "/console/features",
         "/console/feature?id=background-removal", "/console/evaluations", "/console/experiments",
         "/console/experiment?name=usercf-boost"]


# --- auth ------------------------------------------------------------------------------------

def test_without_a_valid_key_every_page_is_the_login_page_and_no_data(world, anon):
    for path in PAGES:
        for headers, cookies in (({}, {}), ({"Authorization": "Bearer nope"}, {}),
                                 ({}, {auth.COOKIE: "0" * 64}), ({}, {auth.COOKIE: "not-hex"}),
                                 ({}, {auth.COOKIE: "pgs_" + "0" * 64}),
                                 # the key's SHA-256 (what api_keys stores) was the session cookie until issue 24
                                 ({}, {auth.COOKIE: hashlib.sha256(world["key"].encode()).hexdigest()})):
            anon.cookies.clear()
            for k, v in cookies.items():
                anon.cookies.set(k, v, path="/console")
            r = anon.get(path, headers=headers)
            assert r.status_code == 303, (path, headers, cookies)
            assert r.headers["location"].startswith("/console/login?next=")
            assert "U1" not in r.text and "background" not in r.text
    r = anon.get("/console/user?id=U1", follow_redirects=True)
    assert r.status_code == 200 and '<form method="post" action="/console/login">' in r.text
    assert 'name="next" value="/console/user?id=U1"' in r.text
    assert "tenant <b>" not in r.text and "Recommendations" not in r.text


def test_login_opens_a_server_side_session_that_logout_ends(world, anon):
    r = post_login(anon, {"key": "wrong", "next": "/console/features"})
    assert r.status_code == 401 and "not valid" in r.text and f"{auth.COOKIE}=" not in r.headers.get("set-cookie", "")
    before = len(sessions(world["url"]))
    r = post_login(anon, {"key": world["key"], "next": "/console/features?search=cut"})
    assert r.status_code == 303 and r.headers["location"] == "/console/features?search=cut"
    cookie = r.headers["set-cookie"]
    token = anon.cookies.get(auth.COOKIE)
    # a random token: neither the key nor anything computed from it
    assert re.fullmatch(r"pgs_[0-9a-f]{64}", token) and cookie.startswith(f"{auth.COOKIE}={token};")
    assert world["key"] not in cookie and hashlib.sha256(world["key"].encode()).hexdigest() not in cookie
    low = cookie.lower()
    assert "httponly" in low and "samesite=lax" in low and "path=/console" in low
    assert "max-age" not in low and "expires" not in low  # a session cookie: gone with the browser
    # the server keeps the token's hash, an expiry and an idle timeout (the settings' defaults)
    rows = sessions(world["url"])
    assert len(rows) == before + 1
    row = rows[-1]
    assert bytes(row["token_hash"]) == hashlib.sha256(token.encode()).digest()
    assert row["expires_at"] - row["created_at"] == timedelta(hours=12)
    assert row["idle_timeout"] == timedelta(minutes=30) and row["ended_at"] is None
    page = anon.get("/console")
    assert page.status_code == 200
    # the console cookie opens no REST API
    assert anon.get("/v1/ping").status_code == 401
    assert anon.get("/v1/ping", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # logout needs the page's CSRF token: a form posted without it (another site's) ends nothing
    r = anon.post("/console/logout")
    assert r.status_code == 403 and anon.get("/console").status_code == 200
    r = anon.post("/console/logout", data={"csrf": "0" * 64})
    assert r.status_code == 403 and anon.get("/console").status_code == 200
    r = anon.post("/console/logout", data={"csrf": form_token(page.text)})
    assert r.status_code == 303 and anon.get("/console").status_code == 303
    assert sessions(world["url"])[-1]["ended_why"] == "logout"
    # the same cookie, kept (copied before the logout), opens nothing any more
    anon.cookies.set(auth.COOKIE, token, path="/console")
    r = anon.get("/console")
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")


def test_a_session_ends_at_its_expiry_and_when_idle(world):
    """The clock is moved in the database (not waited for): past the expiry, or past the idle
    timeout since the last page, the cookie sends to the login page; each page restarts the idle clock."""
    with TestClient(console_app(world["url"]), follow_redirects=False) as c:
        for column, value in (("expires_at", "now() - interval '1 second'"),
                              ("last_seen_at", "now() - interval '31 minutes'")):
            login(c, world["key"])
            token = c.cookies.get(auth.COOKIE)
            digest = hashlib.sha256(token.encode()).digest()
            with psycopg.connect(world["url"], autocommit=True) as conn:
                conn.execute("UPDATE reco.console_sessions SET last_seen_at = now() - interval '29 minutes'"
                             " WHERE token_hash = %s", (digest,))
                assert c.get("/console/users").status_code == 200  # 29 minutes idle: still live
                seen = conn.execute("SELECT last_seen_at > now() - interval '1 minute' FROM reco.console_sessions"
                                    " WHERE token_hash = %s", (digest,)).fetchone()[0]
                assert seen  # the page restarted the idle clock
                conn.execute(f"UPDATE reco.console_sessions SET {column} = {value} WHERE token_hash = %s", (digest,))
            r = c.get("/console/users")
            assert r.status_code == 303 and "why=ended" in r.headers["location"], column
            assert "max-age=0" in r.headers["set-cookie"].lower() or f'{auth.COOKIE}=""' in r.headers["set-cookie"]


def test_the_login_form_needs_its_own_token(world, anon):
    """Login CSRF: a form posted from elsewhere (no token, or not the login cookie's) logs nobody in."""
    r = anon.post("/console/login", data={"key": world["key"]})
    assert r.status_code == 403 and f"{auth.COOKIE}=" not in r.headers.get("set-cookie", "")
    token = form_token(anon.get("/console/login").text)
    r = anon.post("/console/login", data={"key": world["key"], "csrf": "f" * 64})
    assert r.status_code == 403 and f"{auth.COOKIE}=" not in r.headers.get("set-cookie", "")
    assert anon.post("/console/login", data={"key": world["key"], "csrf": token}).status_code == 303


def test_login_refuses_other_sites_and_redirects_only_inside_the_console(world, anon):
    r = post_login(anon, {"key": world["key"]}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and f"{auth.COOKIE}=" not in r.headers.get("set-cookie", "")
    for target in ("https://evil.example/", "//evil.example/console", "/v1/ping", "/consolex", "/console\\x"):
        anon.cookies.clear()
        r = post_login(anon, {"key": world["key"], "next": target})
        assert r.status_code == 303 and r.headers["location"] == "/console", target
    anon.cookies.clear()
    r = post_login(anon, {"key": world["key"]}, headers={"Origin": "http://testserver"})
    assert r.status_code == 303


def test_a_bearer_header_works_too_and_a_revoked_key_logs_out(world):
    with psycopg.connect(world["url"], autocommit=True) as conn:
        key = conn.execute("SELECT reco.create_api_key('default', 'revoke me')").fetchone()[0]
    with TestClient(console_app(world["url"]), follow_redirects=False) as c:
        assert c.get("/console", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        login(c, key)
        assert c.get("/console/users").status_code == 200
        token = c.cookies.get(auth.COOKIE)
        with psycopg.connect(world["url"], autocommit=True) as conn:
            conn.execute("SELECT reco.revoke_api_key(%s)", (key[:12],))
            # the revocation ended the key's sessions in the table, not only at their next check
            assert conn.execute("SELECT ended_why FROM reco.console_sessions WHERE token_hash = %s",
                                (hashlib.sha256(token.encode()).digest(),)).fetchone()[0] == "revoked"
        r = c.get("/console/users")
        assert r.status_code == 303 and "why=ended" in r.headers["location"]
        assert f'{auth.COOKIE}=""' in r.headers["set-cookie"] or "max-age=0" in r.headers["set-cookie"].lower()
        assert "no longer valid" in c.get(r.headers["location"]).text


def test_each_key_sees_its_tenant_only(world):
    with TestClient(console_app(world["url"]), follow_redirects=False) as c:
        login(c, world["other"])
        r = c.get("/console")
        assert r.status_code == 200 and "tenant <b>other</b>" in r.text
        assert c.get("/console/user?id=secret-user").status_code == 200
        users = c.get("/console/users").text
        assert "secret-user" in users and world["user"] not in users
        r = c.get(f"/console/user?id={world['user']}")
        assert r.status_code == 404 and "No user" in r.text
        assert c.get("/console/feature?id=background-removal").status_code == 404
        assert c.get("/console/experiment?name=usercf-boost").status_code == 404
        assert "usercf-boost" not in c.get("/console/experiments").text
    with TestClient(console_app(world["url"]), follow_redirects=False) as c:
        login(c, world["key"])
        assert c.get("/console/user?id=secret-user").status_code == 404
        assert "secret-feature" not in c.get("/console/features").text


# --- pages -----------------------------------------------------------------------------------

def test_overview(web):
    r = web.get("/console")
    assert r.status_code == 200 and "tenant <b>default</b>" in r.text
    for text in ("Features", "Users", "Events per day", "Jobs", "feature_neighbors", "succeeded", "Last evaluation",
                 "hybrid", "NDCG@10", "SELECT reco.console_overview(&#39;default&#39;);"):
        assert text in r.text, text
    spec = charts(r.text)["events-per-day"]
    # 30 days of data up to today (the experiment's clicks); today, not over yet, is not plotted
    assert spec["type"] == "time" and len(spec["x"]) == 29 and sum(spec["series"][0]["values"]) > 0
    assert [s["label"] for s in spec["series"]] == ["events", "users"]


def test_users_and_a_user(web, world):
    r = web.get("/console/users?start=U1")
    assert r.status_code == 200 and '<a href="/console/user?id=U1" class="user">U1</a>' in r.text
    r = web.get(f"/console/user?id={world['user']}")
    assert r.status_code == 200
    for text in ("Recommendations now", "because you used", "Segment", "Priors of the user", "Interactions",
                 "Latest events", "Latest exposures", "serving"):
        assert text in r.text, text
    # a recommendation's reasons link the features the user used
    why = re.search(r'<td class="why">(.*?)</td>', r.text, re.S).group(1)
    assert why.startswith("because you used ") and 'href="/console/feature?id=' in why
    assert web.get("/console/user").status_code == 303
    r = web.get("/console/user?id=nobody-like-this")
    assert r.status_code == 404 and "nobody-like-this" in r.text


def test_features_and_a_feature(web):
    r = web.get("/console/features?search=REMOVAL")
    assert r.status_code == 200 and "background-removal" in r.text and "Upscale" not in r.text
    r = web.get("/console/feature?id=background-removal&days=30")
    assert r.status_code == 200
    for text in ("Usage over time", "Similar features", "used together", "Segments that use it", "industry = "):
        assert text in r.text, text
    spec = charts(r.text)["feature-usage"]
    assert len(spec["x"]) == 29  # 30 days to today, which is not over yet: not plotted
    assert [s["label"] for s in spec["series"]] == ["uses", "users", "first-time users"]
    assert web.get("/console/feature?id=background-removal&days=abc").status_code == 200
    assert web.get("/console/feature?id=no-such").status_code == 404


def test_evaluations(web):
    r = web.get("/console/evaluations")
    assert r.status_code == 200 and "Runs" in r.text and "hybrid" in r.text
    specs = charts(r.text)
    assert {"ndcg", "hit"} <= specs.keys()
    assert {s["label"] for s in specs["ndcg"]["series"]} >= {"hybrid", "itemcf", "popularity"}
    assert all(v is None or 0 <= v <= 1 for s in specs["ndcg"]["series"] for v in s["values"])


def test_experiments_and_a_report(web):
    r = web.get("/console/experiments")
    assert r.status_code == 200 and "usercf-boost" in r.text and "next-idea" in r.text
    assert r.text.index("usercf-boost") < r.text.index("next-idea")  # running first
    r = web.get("/console/experiment?name=usercf-boost")
    assert r.status_code == 200
    html = r.text
    # SRM first, then the decision, lifts, sequential monitoring
    order = [html.index(s) for s in ('id="srm"', 'id="decision"', "Lifts with 95", "Sequential monitoring")]
    assert order == sorted(order)
    specs = charts(html)
    rows = specs["lifts"]["rows"]
    assert rows and all(r["low"] <= r["high"] for r in rows) and {r["section"] for r in rows} >= {"metric"}
    assert all("control" not in r["label"] for r in rows)
    seq = specs["sequential"]
    assert [b["look"] for b in seq["looks"]] == [1, 2, 3, 4]
    assert seq["looks"][0]["z"] > seq["looks"][-1]["z"] > 1.9  # O'Brien–Fleming: strict early, ~2 at the end
    assert web.get("/console/experiment?name=next-idea").text.count("Not started") == 1


def test_client_data_is_escaped_everywhere(web):
    pages = [web.get("/console/user?id=" + render.q(XSS_USER)), web.get("/console/features"),
             web.get("/console/feature?id=" + render.q(XSS_FEATURE)), web.get("/console/users?start=%3C")]
    for r in pages:
        assert r.status_code == 200, r.text
        html = r.text
        assert XSS_USER not in html and XSS_NAME not in html and "</script><b>" not in html
        # the only script elements are the page's own: two in the head and the charts' JSON
        assert len(re.findall(r"<script", html, re.I)) == 2 + html.count('class="chart-data"')
    assert "&lt;script&gt;alert(&#34;user&#34;)&lt;/script&gt;" in pages[0].text
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages[1].text
    # ids in links are percent-encoded
    assert 'href="/console/feature?id=x-%3Cimg%3E"' in pages[1].text


def test_pages_are_bounded_and_carry_security_headers(web, world):
    r = web.get("/console/user?id=many")
    assert r.status_code == 200 and "The 50 latest." in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["cache-control"] == "no-store" and r.headers["x-content-type-options"] == "nosniff"
    with psycopg.connect(world["url"], row_factory=dict_row) as conn:
        page = conn.execute("SELECT reco.console_user('many', 'default') AS p").fetchone()["p"]
        assert len(page["events"]) == 50 and page["interactions_total"] == 1
        assert len(conn.execute("SELECT reco.console_users(NULL, 100000) AS p").fetchone()["p"]) <= 200
        assert len(conn.execute("SELECT reco.console_features(NULL, 0) AS p").fetchone()["p"]) == 1
        assert conn.execute("SELECT count(*) AS n FROM reco.console_events_per_day(100000)").fetchone()["n"] <= 366


def test_static_files_are_served_from_the_package_only(anon):
    for path, kind in (("console.js", "text/javascript"), ("console.css", "text/css"),
                       ("vendor/uPlot.iife.min.js", "text/javascript"), ("vendor/uPlot.min.css", "text/css")):
        r = anon.get(f"/console/static/{path}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), path
    for path in ("../routes.py", "..%2Froutes.py", "nope.js", "vendor", "../templates/base.html"):
        assert anon.get(f"/console/static/{path}").status_code == 404, path


def test_every_page_is_an_sql_function_an_analyst_can_run(world):
    with psycopg.connect(world["url"], row_factory=dict_row) as conn:
        conn.execute("SET reco.tenant = 'default'")
        o = conn.execute("SELECT reco.console_overview() AS p").fetchone()["p"]
        assert o["tenant"] == "default" and o["catalog"]["features"] == 25 and o["users"]["users"] >= 150
        assert len(o["events_per_day"]) == 30 and len(o["runs"]) <= 30 and o["evaluation"]["models"]
        days = conn.execute("SELECT * FROM reco.console_events_per_day(7)").fetchall()
        assert len(days) == 7 and str(days[-1]["day"]) == o["events_per_day"][-1]["day"]
        u = conn.execute("SELECT reco.console_user(%s) AS p", (world["user"],)).fetchone()["p"]
        assert u["recommendations"] and u["segment"]["serving"] and u["priors"]
        assert conn.execute("SELECT reco.console_user('nobody') AS p").fetchone()["p"] is None
        f = conn.execute("SELECT reco.console_feature('background-removal', 14) AS p").fetchone()["p"]
        assert len(f["usage"]) == 14 and f["similar"] and f["segments"]
        e = conn.execute("SELECT reco.console_evaluations() AS p").fetchone()["p"]
        assert e["runs"] and e["runs"][0]["models"]
        x = conn.execute("SELECT reco.console_experiment('usercf-boost') AS p").fetchone()["p"]
        assert x["report"] and x["users"] > 0 and x["boundaries"] and x["report_error"] is None
        assert [r["name"] for r in conn.execute("SELECT reco.console_experiments() AS p").fetchone()["p"]] == [
            "usercf-boost", "next-idea"]
        # reads only: the whole set runs in a read-only transaction
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute("SELECT reco.console_user(%s), reco.console_overview(), reco.console_feature('colorize'),"
                         " reco.console_experiment('usercf-boost')", (world["user"],))


def test_a_report_that_cannot_be_made_is_said_on_the_page(world, web):
    with psycopg.connect(world["url"], autocommit=True) as conn:
        conn.execute("SELECT reco.upsert_scenario('elsewhere')")
        conn.execute("SELECT reco.create_experiment('broken', %s, '{\"scenario\": \"elsewhere\"}')",
                     (Jsonb([{"name": "a"}, {"name": "b"}]),))
        conn.execute("SELECT reco.start_experiment('broken')")
        conn.execute("ALTER FUNCTION reco.experiment_report(text, text) RENAME TO experiment_report_saved")
    try:
        r = web.get("/console/experiment?name=broken")
        assert r.status_code == 200 and "The report could not be made" in r.text and "experiment_report" in r.text
    finally:
        with psycopg.connect(world["url"], autocommit=True) as conn:
            conn.execute("ALTER FUNCTION reco.experiment_report_saved(text, text) RENAME TO experiment_report")


def test_database_unavailable_is_a_page_not_a_crash(world, monkeypatch):
    monkeypatch.setattr(data, "POOL_WAIT", 0.3)
    url = "postgresql://nobody@/reco?host=/nonexistent-socket-dir"
    # the API's pool wait as configured in production (the tests' generous one would wait PATIENT s
    # for the tenant-budget lookup of the console's hook)
    with TestClient(console_app(url, api_pool_timeout=0.3), follow_redirects=False) as c:
        c.cookies.set(auth.COOKIE, "pgs_" + "0" * 64, path="/console")
        r = c.get("/console")
        assert r.status_code == 503 and "Database unavailable" in r.text
        r = post_login(c, {"key": "whatever"})
        assert r.status_code == 503


# --- the first hour (issue 25) ----------------------------------------------------------------

def test_the_login_placeholder_looks_like_a_key(world, anon):
    key = anon.get("/console/login").text
    assert 'placeholder="pgr_…"' in key and world["key"].startswith("pgr_")


def test_today_is_not_plotted_as_a_cliff():
    """Today's counts are of a day not over yet: the daily charts end with yesterday."""
    today = datetime.now(UTC).date()
    rows = [{"day": (today - timedelta(days=n)).isoformat(), "events": 100, "users": 10} for n in (2, 1, 0)]
    rows[-1]["events"] = 3
    spec = views.daily_chart(rows, [("events", "events", "bars")])
    assert spec["x"] == [views._day(r["day"]) for r in rows[:2]] and spec["series"][0]["values"] == [100, 100]


def test_sample_ratio_with_no_users_is_not_a_pass(world, web):
    with psycopg.connect(world["url"], autocommit=True) as conn:
        conn.execute("SELECT reco.upsert_scenario('nobody-here', '{}')")
        conn.execute("SELECT reco.create_experiment('unseen', %s, %s)",
                     (Jsonb([{"name": "control"}, {"name": "b"}]), Jsonb({"scenario": "nobody-here"})))
        conn.execute("SELECT reco.start_experiment('unseen')")
    html = web.get("/console/experiment?name=unseen").text
    assert "No users assigned yet: nothing to check." in html
    assert "srm-ok" not in html and "srm-none" in html
    assert "srm-ok" in web.get("/console/experiment?name=usercf-boost").text


def test_success_rate_is_empty_without_success_data(world):
    """feature_stats smooths the success rate to 50 % when no use has a success or failure recorded:
    the console shows none then."""
    with psycopg.connect(world["url"], autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SELECT reco.upsert_features('[{\"feature_id\": \"no-outcome\"}]')")
        day = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        conn.execute("SELECT reco.ingest_events(%s)", (Jsonb(
            [{"event_id": f"no-outcome-{u}", "user_id": u, "feature_id": "no-outcome", "occurred_at": day}
             for u in ("U1", "U2", "U3")]),))
        conn.execute("SELECT reco.job_feature_stats(reco._tenant_id('default'))")
        stats = conn.execute("""SELECT count(*) AS n, min(success_rate) AS rate, max(successes + failures) AS known
                                FROM reco.feature_stats s JOIN reco.features f USING (tenant_id, feature_key)
                                WHERE f.feature_id = 'no-outcome'""").fetchone()
        assert stats["n"] > 1 and stats["rate"] == 0.5 and stats["known"] == 0
        page = conn.execute("SELECT reco.console_feature('no-outcome') AS p").fetchone()["p"]
        assert page["segments"] and all(s["success_rate"] is None for s in page["segments"])
        listed = conn.execute("SELECT reco.console_features('no-outcome') AS p").fetchone()["p"]
        assert [f["success_rate"] for f in listed] == [None]
        used = conn.execute("SELECT reco.console_feature('background-removal') AS p").fetchone()["p"]
        assert any(s["success_rate"] is not None for s in used["segments"])
