"""The console's routes: a login form, then one page per reco.console_* SQL function.

Auth: a server-side session (sql/072_console_sessions.sql, docs/security.md). The login form sends
an API key; the database checks it and opens a session (reco.api_console_login): a random token that
the browser keeps in a cookie (HttpOnly, SameSite=Lax, path /console, gone when the browser closes)
and the database keeps hashed, with an expiry (console_session_hours) and an idle timeout
(console_idle_minutes). Nothing in the cookie derives from the key: it opens neither the REST API
nor, once ended (logout, expiry, idleness, the key revoked), the console. Each page is checked and
its idle clock restarted (reco.api_console_session, on the write pool), then is one read-only SQL
call, ``reco.api_console_<page>(<token>, ...)`` (reco.console_<page> for the session's tenant: the
API's role, reco_api, cannot name a tenant). A request without a live session is sent to the login
page (303), never given data; the form brings it back where it was. ``Authorization: Bearer <key>``
works too (curl, scripts), without a session.

Forms: every POST carries a CSRF token, and must come from this origin. The logout form's token is an
HMAC of the session token (a page of another site can read neither); the login form's is a random
value also set in a cookie of its own (double submit).

Each call runs in a read-only transaction with its own statement timeout (the read pool's is the
serving one, tens of milliseconds), and at most SLOTS of them at a time per process, so the
console never holds more than that many of the serving read connections.

Everything shown is escaped (Jinja2 autoescape; chart data as JSON whose <, >, & and ' are
escaped), the pages load nothing from elsewhere (Content-Security-Policy: 'self' only), and every
list is bounded in SQL."""

from __future__ import annotations

import hmac
import re

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from app.api.fairness import console_budget
from app.console.auth import (
    COOKIE,
    REASONS,
    csrf_for,
    form_token,
    is_https,
    login_page,
    login_token_ok,
    read_form,
    safe_next,
    same_origin,
    session_token,
)
from app.console.data import Unavailable, page_data, query
from app.console.render import HERE, PREFIX, base_path, not_found, render
from app.console.views import COMPONENTS, component_bar, daily_chart, epoch, reason, report_view

STATIC = HERE / "static"
MAX_ID = 200
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png", ".svg": "image/svg+xml",
                ".txt": "text/plain"}

router = APIRouter(prefix=PREFIX, include_in_schema=False, dependencies=[Depends(console_budget)])  # app.api.fairness


# --- login and logout ------------------------------------------------------------------------

@router.get("/login")
async def login_form(request: Request, next: str | None = None, why: str | None = None) -> HTMLResponse:
    return login_page(request, REASONS.get(why or ""), next_url=next)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    if not same_origin(request) or not login_token_ok(request, form):
        return login_page(request, "The login form must be sent from this console (reload it and log in again).",
                          status=403)
    key = (form.get("key") or [""])[0].strip()
    next_url = safe_next(base_path(request), (form.get("next") or [None])[0])
    if not key or len(key) > 500:
        return login_page(request, "Paste an API key.", status=401, next_url=next_url)
    settings = request.app.state.reco.settings
    lifetime = settings.console_session_hours * 3600
    idle = min(settings.console_idle_minutes * 60, lifetime)
    try:
        session = await query(request, "SELECT reco.api_console_login(%s, make_interval(secs => %s),"
                                       " make_interval(secs => %s))", (key, lifetime, idle), write=True)
    except psycopg.errors.InvalidAuthorizationSpecification:
        return login_page(request, "That key is not valid (unknown or revoked).", status=401, next_url=next_url)
    except Unavailable as exc:
        return render(request, "error.html", status=503, title="Database unavailable", message=str(exc))
    resp = RedirectResponse(next_url, status_code=303)
    resp.set_cookie(COOKIE, session, path=base_path(request), httponly=True, samesite="lax", secure=is_https(request))
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Ends the session on the server (its token then opens nothing), then forgets the cookie."""
    session = session_token(request)
    form = await read_form(request)
    if session is None:
        return RedirectResponse(f"{base_path(request)}/login", status_code=303)
    if not same_origin(request) or not hmac.compare_digest(form_token(form), csrf_for(session)):
        return render(request, "error.html", status=403, title="Not logged out",
                      message="The logout form must be sent from this console's own pages.")
    try:
        await query(request, "SELECT reco.api_console_logout(%s)", (session,), write=True)
    except Unavailable as exc:
        return render(request, "error.html", status=503, title="Database unavailable",
                      message=f"The session could not be ended on the server: {exc} Log out again later.")
    resp = RedirectResponse(f"{base_path(request)}/login", status_code=303)
    resp.delete_cookie(COOKIE, path=base_path(request))
    return resp


#: ?days=: ASCII digits only (str.isdigit takes "²", and int() of 4,301 digits raises), at most 4 of them
_DAYS = re.compile(r"[0-9]{1,4}")


def _clip(value: str | None, limit: int = MAX_ID) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value[:limit] if value else None


# --- pages -----------------------------------------------------------------------------------

@router.get("")
async def overview(request: Request) -> Response:
    data, resp = await page_data(request, "reco.api_console_overview(%s)")
    if resp:
        return resp
    page = data["page"]
    chart = daily_chart(page["events_per_day"], [("events", "events", "bars"), ("users", "users", "line:y2")])
    if chart:
        chart["ylabel"] = "events"
    return render(request, "overview.html", tenant=data["tenant"], d=page, chart=chart)


@router.get("/users")
async def users(request: Request, start: str | None = None) -> Response:
    start = _clip(start)
    data, resp = await page_data(request, "reco.api_console_users(%s, %s, 50)", (start,))
    if resp:
        return resp
    return render(request, "users.html", tenant=data["tenant"], users=data["page"], start=start or "")


@router.get("/user")
async def user(request: Request, id: str | None = None) -> Response:
    user_id = _clip(id)
    if not user_id:
        return RedirectResponse(f"{base_path(request)}/users", status_code=303)
    data, resp = await page_data(request, "reco.api_console_user(%s, %s)", (user_id,))
    if resp:
        return resp
    page = data["page"]
    if page is None:
        return not_found(request, f"No user {user_id!r} in tenant {data['tenant']}.", data["tenant"])
    top = max((sum(max(float(v or 0), 0) for k, v in (r.get("components") or {}).items() if k in COMPONENTS)
               for r in page["recommendations"]), default=0)
    for r in page["recommendations"]:
        r["why"] = reason(r, page["segment"]["serving"])
        r["bar"] = component_bar(r.get("components") or {}, top)
    return render(request, "user.html", tenant=data["tenant"], d=page)


@router.get("/features")
async def features(request: Request, search: str | None = None) -> Response:
    search = _clip(search)
    data, resp = await page_data(request, "reco.api_console_features(%s, %s, 200)", (search,))
    if resp:
        return resp
    return render(request, "features.html", tenant=data["tenant"], features=data["page"], search=search or "")


@router.get("/feature")
async def feature(request: Request, id: str | None = None, days: str | None = None) -> Response:
    feature_id = _clip(id)
    if not feature_id:
        return RedirectResponse(f"{base_path(request)}/features", status_code=303)
    n_days = min(max(int(days), 7), 366) if days and _DAYS.fullmatch(days) else 90
    data, resp = await page_data(request, "reco.api_console_feature(%s, %s, %s)", (feature_id, n_days))
    if resp:
        return resp
    page = data["page"]
    if page is None:
        return not_found(request, f"No feature {feature_id!r} in tenant {data['tenant']}.", data["tenant"])
    chart = daily_chart(page["usage"], [("events", "uses", "bars"), ("users", "users", "line"),
                                        ("new_users", "first-time users", "line")])
    return render(request, "feature.html", tenant=data["tenant"], d=page, chart=chart, days=n_days)


@router.get("/evaluations")
async def evaluations(request: Request) -> Response:
    data, resp = await page_data(request, "reco.api_console_evaluations(%s, 50)")
    if resp:
        return resp
    page = data["page"]
    runs = page["runs"]
    models = sorted({m["model"] for r in runs for m in r["models"] or []})
    charts = {}
    if runs:
        x = [epoch(r["finished_at"]) for r in runs]
        for metric, label in (("ndcg", "NDCG"), ("hit_rate", "HitRate")):
            charts[metric] = {"type": "time", "x": x, "points": True, "ylabel": f"{label}@{runs[-1]['k']}",
                              "series": [{"label": m, "kind": "line", "scale": "y",
                                          "values": [next((v[metric] for v in r["models"] or [] if v["model"] == m),
                                                          None) for r in runs]} for m in models]}
    # the chart plots the holdout's trials only: the second fold's NDCG is on other users
    trials = [t for t in page["trials"] if t.get("fold", "holdout") == "holdout"]
    if trials:
        # the x axis names each stage at its first trial
        names = [t["stage"] if i == 0 or trials[i - 1]["stage"] != t["stage"] else "" for i, t in enumerate(trials)]
        charts["trials"] = {"type": "num", "x": list(range(1, len(trials) + 1)), "points": True, "xlabel": "trial",
                            "xnames": names,
                            "series": [{"label": "NDCG@10", "kind": "line", "scale": "y",
                                        "values": [t["ndcg"] for t in trials]},
                                       {"label": "kept by its stage", "kind": "points", "scale": "y",
                                        "values": [t["ndcg"] if t["kept"] else None for t in trials]}]}
    return render(request, "evaluations.html", tenant=data["tenant"], d=page, models=models, charts=charts,
                  latest=runs[-1] if runs else None)


@router.get("/experiments")
async def experiments(request: Request) -> Response:
    data, resp = await page_data(request, "reco.api_console_experiments(%s)")
    if resp:
        return resp
    return render(request, "experiments.html", tenant=data["tenant"], experiments=data["page"])


@router.get("/experiment")
async def experiment(request: Request, name: str | None = None) -> Response:
    exp_name = _clip(name)
    if not exp_name:
        return RedirectResponse(f"{base_path(request)}/experiments", status_code=303)
    data, resp = await page_data(request, "reco.api_console_experiment(%s, %s)", (exp_name,))
    if resp:
        return resp
    page = data["page"]
    if page is None:
        return not_found(request, f"No experiment {exp_name!r} in tenant {data['tenant']}.", data["tenant"])
    return render(request, "experiment.html", tenant=data["tenant"], d=page, **report_view(page))


@router.get("/static/{name:path}")
async def static(name: str) -> Response:
    path = (STATIC / name).resolve()
    if not path.is_relative_to(STATIC) or not path.is_file() or path.suffix not in STATIC_TYPES:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix],
                        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})
