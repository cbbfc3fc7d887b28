"""The console in a real browser: headless Chromium (Debian's package, `apt-get install chromium`;
`make test` installs it where it runs as root) driven by Playwright with executable_path, so no
browser is downloaded. The API runs in uvicorn on a free port against a database of generated demo
data (jobs, evaluations, a tune run, a running experiment with clicks); every page is opened after
logging in through the form, its content checked, its charts checked for drawn pixels or SVG marks,
and the page must log no console error.

Screenshots of every page are taken; with RECO_SCREENSHOTS=1 they are written to
app/console/static/screenshots/ (the README's images), else to the test's temporary directory (so
that a test run leaves the work tree as it was).

Skipped, saying why, when Playwright or Chromium is missing."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on PATH: `apt-get install chromium` (make test installs it when root)"),
    pytest.mark.usefixtures("patient_console")]

from tests.helpers import (  # noqa: E402
    PATIENT,
    XSS_NAME,
    console_app,
    database,
    seed_churn,
    seed_demo,
    seed_experiment,
    wait_for,
)

SHOTS = Path(__file__).resolve().parent.parent / "app" / "console" / "static" / "screenshots"
XSS_ID = "<img src=x onerror=window.__pwned=1>"

#: pages whose screenshot is the first screen only (long lists)
FIRST_SCREEN = {"users", "features"}
#: (path, file name, texts the page shows, charts it draws)
PAGES = [
    ("/console", "overview", ["Events per day", "Jobs", "feature_neighbors", "Last evaluation", "running of"],
     ["events-per-day"]),
    ("/console/users", "users", ["features used", "U1"], []),
    ("/console/user?id={user}", "user", ["Recommendations now", "because you used", "Segment", "Priors of the user",
                                         "Interactions", "Latest events", "Latest exposures", "usercf-boost"], []),
    ("/console/features", "features", ["Background removal", "success rate"], []),
    ("/console/feature?id=background-removal", "feature", ["Usage over time", "Similar features",
                                                           "Segments that use it"], ["feature-usage"]),
    ("/console/evaluations", "evaluations", ["NDCG@10 per model", "Runs", "The tune job", "hybrid"],
     ["ndcg", "hit", "trials"]),
    ("/console/experiments", "experiments", ["usercf-boost", "next-idea", "running", "draft"], []),
    ("/console/experiment?name=usercf-boost", "experiment", ["Sample ratio check", "Decision", "Lifts with 95",
                                                             "Sequential monitoring", "clicked"],
     ["lifts", "sequential"]),
    ("/console/churn", "churn", ["Model registry", "Feature importance", "Highest risk", "days_since_last",
                                 "Retention list", "would pick for this budget", "measured against assumed"],
     ["histogram", "calibration", "roc", "pr"]),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(server_url, template_db, tmp_path_factory) -> Iterator[dict]:
    import uvicorn

    for url in database(server_url, template_db):
        key = seed_demo(url, tmp_path_factory.mktemp("browser-demo"), users=400, days=45, tune_users=150)
        with psycopg.connect(url, autocommit=True) as conn:
            # a second evaluation run, with other weights: the history has two points per model
            conn.execute("SELECT * FROM reco.evaluate(10, NULL, '{\"weight_usercf\": 0.3}')")
            # hostile ids and names, in a tenant of their own (the screenshots show the demo tenant)
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
            conn.execute("SELECT reco.create_tenant('hostile')")
            conn.execute("SELECT reco.upsert_features(%s, 'hostile')", (Jsonb([
                {"feature_id": "xss-feature", "name": XSS_NAME}, {"feature_id": "plain"}]),))
            conn.execute("SELECT reco.ingest_events(%s, 'hostile')", (Jsonb([
                {"user_id": XSS_ID, "feature_id": f, "occurred_at": when} for f in ("plain", "xss-feature")]),))
            hostile = conn.execute("SELECT reco.create_api_key('hostile', 'xss')").fetchone()[0]
        seed_experiment(url, key, users=400)
        # a churn state (models, scores, payments): the churn page's charts and its real retention list
        seed_churn(url, users=300, xss=False)
        with psycopg.connect(url) as conn:
            user = conn.execute(
                "SELECT u.user_id FROM reco.users u JOIN reco.interactions i USING (tenant_id, user_key)"
                " JOIN reco.exposures x ON x.tenant_id = u.tenant_id AND x.user_key = u.user_key"
                " GROUP BY u.user_id ORDER BY count(DISTINCT i.feature_key) DESC, u.user_id LIMIT 1").fetchone()[0]
        port = free_port()
        srv = uvicorn.Server(uvicorn.Config(console_app(url), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        wait_for(lambda s=srv, t=thread: s.started or not t.is_alive(), what="the API to start")
        assert srv.started, "the API did not start"
        try:
            yield {"base": f"http://127.0.0.1:{port}", "key": key, "hostile": hostile, "url": url, "user": user}
        finally:
            srv.should_exit = True
            thread.join(PATIENT)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM)
        except Exception as exc:  # e.g. a Chromium too old for this Playwright
            pytest.skip(f"Chromium at {CHROMIUM} did not start under Playwright: {exc}")
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, device_scale_factor=1)
    context.set_default_timeout(PATIENT * 1000)  # a busy machine renders slowly; only a failure waits that long
    pg = context.new_page()
    pg.problems = []
    pg.on("console", lambda m: m.type in ("error", "warning") and pg.problems.append(f"console.{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: pg.problems.append(f"page error: {e}"))
    pg.on("dialog", lambda d: (pg.problems.append(f"dialog: {d.message}"), d.dismiss()))
    yield pg
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    if os.environ.get("RECO_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        return SHOTS
    return tmp_path_factory.mktemp("screenshots")


def drawn(pg) -> dict[str, int]:
    """Per chart on the page: the canvas pixels uPlot painted, or the marks of an SVG chart."""
    return pg.evaluate("""() => Object.fromEntries(Array.from(document.querySelectorAll('figure.chart')).map(f => {
        const canvas = f.querySelector('canvas');
        if (canvas) {
            const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
            return [f.dataset.chart, n];
        }
        return [f.dataset.chart, f.querySelectorAll('svg circle, svg line, svg polyline').length];
    }))""")


def test_log_in_and_open_every_page(server, page, shots):
    base = server["base"]
    page.goto(f"{base}/console/user?id={server['user']}")
    assert "/console/login" in page.url and page.locator("#key").is_visible()
    assert page.locator("main table").count() == 0 and "Recommendations" not in page.content()
    page.screenshot(path=str(shots / "login.png"))
    page.fill("#key", "not-a-key")
    page.click("button[type=submit]")
    assert "not valid" in page.inner_text(".alert")
    page.fill("#key", server["key"])
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/console/user?id={server['user']}")  # back where the login started
    page.problems.clear()  # the refused login answered 401, which Chromium logs

    for path, name, texts, chart_ids in PAGES:
        page.goto(base + path.format(user=server["user"]))
        page.wait_for_load_state("load")
        page.wait_for_function("""() => Array.from(document.querySelectorAll('figure.chart'))
                                        .every(f => f.dataset.rendered)""")
        body = page.inner_text("main")
        for text in texts:
            assert text in body, (name, text)
        marks = drawn(page)
        assert set(chart_ids) <= set(marks), (name, marks)
        for chart, n in marks.items():
            assert page.get_attribute(f"#chart-{chart}", "data-rendered") == "true", (name, chart)
            assert n > (300 if page.locator(f"#chart-{chart} canvas").count() else 3), (name, chart, n)
        page.screenshot(path=str(shots / f"{name}.png"), full_page=name not in FIRST_SCREEN)
        assert page.problems == [], (name, page.problems)

    # links carry ids: from a user's recommendation to the feature it was recommended because of
    page.goto(f"{base}/console/user?id={server['user']}")
    page.locator("td.why a").first.click()
    page.wait_for_load_state("load")
    assert "/console/feature?id=" in page.url and "Similar features" in page.inner_text("main")
    # log out: the session is gone
    page.click("header button[type=submit]")
    page.wait_for_load_state("load")
    assert "/console/login" in page.url
    page.goto(f"{base}/console")
    assert "/console/login" in page.url
    assert page.problems == []


def test_the_churn_budget_slider_reloads_the_list_of_its_budget(server, page):
    base = server["base"]
    page.goto(f"{base}/console/login")
    page.fill("#key", server["key"])
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    page.goto(f"{base}/console/churn?budget=50")
    before = page.inner_text("#list-cost")
    page.locator("#budget-range").fill("400")  # a drag let go: input, then change submits the form
    page.wait_for_url("**/console/churn?budget=400")
    assert page.input_value("#budget") == "400" and page.input_value("#budget-range") == "400"
    assert page.inner_text("#list-cost") != before
    page.fill("#budget", "80")
    page.press("#budget", "Enter")
    page.wait_for_url("**/console/churn?budget=80")
    assert page.problems == []


def test_hostile_ids_and_names_stay_text(server, page):
    base = server["base"]
    page.goto(f"{base}/console/login")
    page.fill("#key", server["hostile"])
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    from urllib.parse import quote

    for path in (f"/console/user?id={quote(XSS_ID, safe='')}", "/console/features", "/console/feature?id=xss-feature",
                 f"/console/users?start={quote('<', safe='')}"):
        page.goto(base + path)
        page.wait_for_load_state("load")
        assert page.evaluate("() => window.__pwned === undefined")
        assert page.locator("main img").count() == 0
    page.goto(f"{base}/console/user?id={quote(XSS_ID, safe='')}")
    assert XSS_ID in page.inner_text("h1")  # shown as the text it is
    page.goto(f"{base}/console/features")
    assert XSS_NAME in page.inner_text("main")
    assert page.problems == []


def test_number_and_time_labels(page):
    """console.js's labels, in the browser without a server: 7.5 not "7.500"; time axes in 24-hour
    time (uPlot's own default is 12-hour), a date per day tick."""
    static = Path(__file__).resolve().parent.parent / "app" / "console" / "static"
    page.set_content("<!doctype html><html><body></body></html>")
    page.add_script_tag(path=str(static / "vendor" / "uPlot.iife.min.js"))
    page.add_script_tag(path=str(static / "console.js"))
    assert page.evaluate("() => [7.5, 2.5, 0.25, 0.123, 12.5, 3, 1234].map(window.recoConsole.fmt)") == [
        "7.5", "2.5", "0.25", "0.123", "12.5", "3", "1,234"]
    # 2026-12-07 13:00 and 14:00 UTC, hour ticks; then two midnights, day ticks
    assert page.evaluate("() => window.recoConsole.timeTicks(null, [1796648400, 1796652000], 0, 50, 3600)") == [
        "13:00\n12-07", "14:00"]
    assert page.evaluate("() => window.recoConsole.timeTicks(null, [1796601600, 1796688000], 0, 50, 86400)") == [
        "12-07", "12-08"]
    assert page.problems == []


def test_tables_are_not_clipped_at_1280_px(server, browser):
    """At a 1280 px wide window, no table of the overview (the latest job runs, beside the last
    evaluation) or of the experiments list hides columns behind a scroll bar."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    try:
        pg = context.new_page()
        pg.goto(f"{server['base']}/console/login")
        pg.fill("#key", server["key"])
        pg.click("button[type=submit]")
        pg.wait_for_load_state("load")
        for path in ("/console", "/console/experiments"):
            pg.goto(server["base"] + path)
            pg.wait_for_load_state("load")
            hidden = pg.evaluate("""() => Array.from(document.querySelectorAll('main table')).map(t => {
                const box = t.closest('.scroll, .card');
                return box.scrollWidth - box.clientWidth;
            })""")
            assert hidden and all(h <= 0 for h in hidden), (path, hidden)
    finally:
        context.close()
