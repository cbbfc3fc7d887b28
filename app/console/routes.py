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

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from psycopg_pool import PoolTimeout

from app.api.fairness import console_budget
from app.api.limits import text_problem

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
PREFIX = "/console"
COOKIE = "pgreco_console"
#: the login form's CSRF cookie (double submit: the form carries the same value)
LOGIN_COOKIE = "pgreco_console_login"
#: statement timeout of a console query (ms): pages aggregate, unlike the serving reads
TIMEOUT_MS = 15_000
#: console queries at a time per process (each holds a read connection while it runs)
SLOTS = 2
#: seconds a page waits for a free read connection
POOL_WAIT = 5.0
MAX_ID = 200
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png", ".svg": "image/svg+xml",
                ".txt": "text/plain"}

router = APIRouter(prefix=PREFIX, include_in_schema=False, dependencies=[Depends(console_budget)])  # app.api.fairness


# --- rendering -------------------------------------------------------------------------------

def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def when(value: Any, seconds: bool = False) -> str:
    """An ISO time from SQL as 'YYYY-MM-DD HH:MM' (UTC)."""
    t = _parse_time(value)
    if t is None:
        return "–"
    # a no-break space: a time never wraps between its date and its hour
    return t.strftime("%Y-%m-%d\u00a0%H:%M:%S" if seconds else "%Y-%m-%d\u00a0%H:%M")


def num(value: Any, digits: int | None = None) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if digits is not None:
        return f"{v:,.{digits}f}"
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    a = abs(v)
    return f"{v:,.0f}" if a >= 1000 else f"{v:.2f}" if a >= 10 else f"{v:.3f}" if a >= 0.01 else f"{v:.2g}"


def pct(value: Any, signed: bool = False) -> str:
    if value is None:
        return "–"
    v = float(value)
    return f"{v:+.1%}" if signed else f"{v:.1%}"


def duration(seconds: Any) -> str:
    if seconds is None:
        return "–"
    s = float(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    return f"{m} min {s} s" if m < 60 else f"{m // 60} h {m % 60} min"


def pvalue(value: Any) -> str:
    if value is None:
        return "–"
    v = float(value)
    return "<0.0001" if v < 1e-4 else f"{v:.4f}"


def q(value: Any) -> str:
    """A value for a query string (everything but unreserved characters percent-encoded)."""
    return quote(str(value), safe="")


def compact(value: Any) -> str:
    """A JSON value on one line (attributes, overrides, trial settings)."""
    if value is None:
        return "–"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {compact(v)}" for k, v in value.items()) or "–"
    if isinstance(value, list):
        return ", ".join(compact(v) for v in value) or "–"
    if isinstance(value, float):
        return num(value)
    return str(value)


env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                  trim_blocks=True, lstrip_blocks=True)
env.filters.update(when=when, num=num, pct=pct, duration=duration, pvalue=pvalue, q=q, compact=compact)
env.policies["json.dumps_kwargs"] = {"sort_keys": False, "allow_nan": False}

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _base(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}{PREFIX}"


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("tenant", None)
    context.setdefault("csrf", getattr(request.state, "csrf", ""))  # the logout form's (page_data sets it)
    html = env.get_template(template).render(base=_base(request), page=template.removesuffix(".html"), **context)
    return HTMLResponse(html, status_code=status, headers={
        "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store", "X-Frame-Options": "DENY"})


# --- auth ------------------------------------------------------------------------------------

_SESSION = re.compile(r"pgs_[0-9a-f]{64}")
_TOKEN = re.compile(r"[0-9a-f]{64}")
_CSRF_LABEL = b"pgreco console csrf v1"


def session_token(request: Request) -> str | None:
    """The console session token of the cookie, if it has the shape of one."""
    cookie = request.cookies.get(COOKIE, "")
    return cookie if _SESSION.fullmatch(cookie) else None


def credential(request: Request) -> str | None:
    """What the database checks (reco._console_auth): the session token, else a bearer key."""
    session = session_token(request)
    if session:
        return session
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def csrf_for(session: str) -> str:
    """The CSRF token of a session's forms: an HMAC of its token (which only this browser's HttpOnly
    cookie and the server see), so nothing is stored and another site cannot compute it."""
    return hmac.new(session.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def _form_token(form: dict[str, list[str]]) -> str:
    return (form.get("csrf") or [""])[0]


async def _form(request: Request) -> dict[str, list[str]]:
    return parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _safe_next(base: str, value: str | None) -> str:
    """Where to go after the login: a console path of this server only (no open redirect)."""
    if not value:
        return base
    parts = urlsplit(value)
    inside = value == base or value.startswith((f"{base}/", f"{base}?"))
    if parts.scheme or parts.netloc or not inside or "\\" in value or any(ord(c) < 32 for c in value):
        return base
    return value


REASONS = {"ended": "Your session has ended or your key is no longer valid (logged out, expired, idle too "
                      "long, or the key revoked). Log in again."}


def login_page(request: Request, message: str | None = None, status: int = 200,
               next_url: str | None = None) -> HTMLResponse:
    """The login form, with its CSRF token: the login cookie's value, or a new one set with it."""
    token = request.cookies.get(LOGIN_COOKIE, "")
    fresh = not _TOKEN.fullmatch(token)
    if fresh:
        token = secrets.token_hex(32)
    resp = render(request, "login.html", status=status, message=message,
                  next=_safe_next(_base(request), next_url), csrf=token)
    if fresh:
        resp.set_cookie(LOGIN_COOKIE, token, path=_base(request), httponly=True, samesite="strict",
                        secure=_https(request))
    return resp


def to_login(request: Request, why: str | None = None, forget: bool = False) -> RedirectResponse:
    """An unauthenticated request: to the login form, which comes back here afterwards."""
    target = f"{_base(request)}/login?next={q(_here(request))}" + (f"&why={why}" if why else "")
    resp = RedirectResponse(target, status_code=303)
    if forget:
        resp.delete_cookie(COOKIE, path=_base(request))
    return resp


@router.get("/login")
async def login_form(request: Request, next: str | None = None, why: str | None = None) -> HTMLResponse:
    return login_page(request, REASONS.get(why or ""), next_url=next)


def _same_origin(request: Request) -> bool:
    """A form post from this server's own pages (no cross-site login or logout)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _login_token_ok(request: Request, form: dict[str, list[str]]) -> bool:
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    return bool(_TOKEN.fullmatch(cookie)) and hmac.compare_digest(cookie, _form_token(form))


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    if not _same_origin(request) or not _login_token_ok(request, form):
        return login_page(request, "The login form must be sent from this console (reload it and log in again).",
                          status=403)
    key = (form.get("key") or [""])[0].strip()
    next_url = _safe_next(_base(request), (form.get("next") or [None])[0])
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
    resp.set_cookie(COOKIE, session, path=_base(request), httponly=True, samesite="lax", secure=_https(request))
    return resp


def _https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Ends the session on the server (its token then opens nothing), then forgets the cookie."""
    session = session_token(request)
    form = await _form(request)
    if session is None:
        return RedirectResponse(f"{_base(request)}/login", status_code=303)
    if not _same_origin(request) or not hmac.compare_digest(_form_token(form), csrf_for(session)):
        return render(request, "error.html", status=403, title="Not logged out",
                      message="The logout form must be sent from this console's own pages.")
    try:
        await query(request, "SELECT reco.api_console_logout(%s)", (session,), write=True)
    except Unavailable as exc:
        return render(request, "error.html", status=503, title="Database unavailable",
                      message=f"The session could not be ended on the server: {exc} Log out again later.")
    resp = RedirectResponse(f"{_base(request)}/login", status_code=303)
    resp.delete_cookie(COOKIE, path=_base(request))
    return resp


# --- the database ----------------------------------------------------------------------------

class Unavailable(Exception):
    """The database could not answer (unreachable, no free connection, or too slow)."""


def _slots(request: Request) -> asyncio.Semaphore:
    slots = getattr(request.app.state, "console_slots", None)
    if slots is None:
        slots = request.app.state.console_slots = asyncio.Semaphore(SLOTS)
    return slots


@contextlib.asynccontextmanager
async def _connection(request: Request, write: bool) -> AsyncIterator[psycopg.AsyncConnection]:
    state = request.app.state.reco
    pool = state.writes if write else state.reads
    if hasattr(state, "connection"):
        async with state.connection(pool, timeout=POOL_WAIT) as conn:
            yield conn
    else:  # pragma: no cover - an ApiState without the checked connections
        async with pool.connection(timeout=POOL_WAIT) as conn:
            yield conn


async def query(request: Request, sql: str, params: tuple, write: bool = False) -> Any:
    """One console statement: a read-only transaction on the read pool (``write``: the sessions'
    statements, on the write pool), TIMEOUT_MS, at most SLOTS at a time; the first column of its
    row. Unavailable when the database cannot answer."""
    access = "READ WRITE" if write else "READ ONLY"
    try:
        async with _slots(request), _connection(request, write) as conn, conn.transaction():
            await conn.execute(f"SET TRANSACTION {access}; SET LOCAL statement_timeout = {int(TIMEOUT_MS)}")
            cur = await conn.execute(sql, params)
            row = await cur.fetchone()
            return row[0] if row else None
    except psycopg.errors.QueryCanceled as exc:
        raise Unavailable(f"The query took longer than {TIMEOUT_MS / 1000:g} s and was cancelled.") from exc
    except PoolTimeout as exc:
        raise Unavailable("No database connection became free in time: the database is slow, down, "
                          "or the API is busy.") from exc
    except psycopg.OperationalError as exc:
        if isinstance(exc, psycopg.errors.InvalidAuthorizationSpecification):
            raise
        raise Unavailable(f"The database could not be reached: {str(exc).strip().splitlines()[0] if str(exc) else exc}"
                          ) from exc


async def page_data(request: Request, call: str, params: tuple = ()) -> tuple[Any, Response | None]:
    """Run a page's SQL function as the caller's tenant: ``call`` is its reco.api_console_* wrapper,
    the credential's placeholder first, e.g. ``reco.api_console_user(%s, %s)`` (session, user id).
    The session is checked (and its idle clock restarted) first. Returns ({tenant, page}, None), or
    (None, the response to send instead: the login page or an error page)."""
    auth = credential(request)
    if auth is None:
        return None, to_login(request)
    bad = next((p for p in params if isinstance(p, str) and text_problem(p)), None)
    if bad is not None:  # PostgreSQL text cannot hold it: the driver's error was a 500
        return None, render(request, "error.html", status=400, title="Bad request",
                            message=f"A parameter {text_problem(bad)}.")
    try:
        tenant = await query(request, "SELECT reco.api_console_session(%s)", (auth,), write=True)
        page = await query(request, f"SELECT {call}", (auth, *params))
    except psycopg.errors.InvalidAuthorizationSpecification:
        state = getattr(request.app.state, "reco", None)
        if state is not None and hasattr(state, "forget") and auth != session_token(request):
            state.forget(auth)  # a bearer key the database refused: no degraded REST answers either
        return None, to_login(request, "ended", forget=True)
    except Unavailable as exc:
        return None, render(request, "error.html", status=503, title="Database unavailable", message=str(exc))
    except psycopg.Error as exc:
        diag = exc.diag
        return None, render(request, "error.html", status=500, title="The database refused the page",
                            message=diag.message_primary or str(exc), hint=diag.message_hint)
    if isinstance(page, str):
        page = json.loads(page)
    if auth == session_token(request):
        request.state.csrf = csrf_for(auth)
    return {"tenant": tenant, "page": page}, None


#: ?days=: ASCII digits only (str.isdigit takes "²", and int() of 4,301 digits raises), at most 4 of them
_DAYS = re.compile(r"[0-9]{1,4}")


def _clip(value: str | None, limit: int = MAX_ID) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value[:limit] if value else None


def not_found(request: Request, what: str, tenant: str | None = None) -> HTMLResponse:
    return render(request, "error.html", status=404, title="Not found", message=what, tenant=tenant)


# --- charts: the SQL rows as the series console.js draws -------------------------------------

def _day(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp())


def _epoch(value: Any) -> int | None:
    t = _parse_time(value)
    return int(t.timestamp()) if t else None


def daily_chart(rows: list[dict], series: list[tuple[str, str, str]]) -> dict | None:
    """rows with 'day' and counts -> a time chart; series: (column, label, kind[:scale]). Today
    (UTC) is left out: a day not over yet would plot as a cliff towards 0."""
    today = datetime.now(UTC).date().isoformat()
    rows = [r for r in rows if str(r["day"])[:10] != today]
    if not rows or not any(r.get(col) for r in rows for col, _, _ in series):
        return None
    out = []
    for col, label, kind in series:
        k, _, scale = kind.partition(":")
        out.append({"label": label, "kind": k, "scale": scale or "y", "values": [r.get(col) for r in rows]})
    return {"type": "time", "x": [_day(r["day"]) for r in rows], "series": out}


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
        return RedirectResponse(f"{_base(request)}/users", status_code=303)
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
        return RedirectResponse(f"{_base(request)}/features", status_code=303)
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
        x = [_epoch(r["finished_at"]) for r in runs]
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
        return RedirectResponse(f"{_base(request)}/experiments", status_code=303)
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


# --- what the pages compute from the SQL rows (presentation only) --------------------------

COMPONENTS = {"itemcf": ("#2f6fdf", "similar to features you used"),
              "usercf": ("#8e44ad", "used by users like you"),
              "prior": ("#16a085", "common in your segment"),
              "popularity": ("#e67e22", "popular in your segment"),
              "session": ("#c0392b", "related to this session"),
              "explore": ("#7f8c8d", "exploring: little is known about it yet")}


def reason(rec: dict, segment: str | None) -> str:
    """A recommendation's reason in words: 'because you used …' when the user's own features led to
    it, else the component that contributed most."""
    because = rec.get("because") or []
    if because:
        return "because you used " + ", ".join(b.get("name") or b["feature_id"] for b in because)
    comps = {k: v for k, v in (rec.get("components") or {}).items() if k in COMPONENTS and v}
    if not comps:
        return "popular"
    top = max(comps, key=comps.get)
    text = COMPONENTS[top][1]
    if top in ("prior", "popularity") and (rec.get("segment") or segment) not in (None, "*=*"):
        text += f" ({rec.get('segment') or segment})"
    return text


def component_bar(components: dict, top: float, width: int = 160) -> list[dict]:
    """The score's parts as a stacked bar (SVG rects drawn by the template), in a fixed order, on
    one scale for the whole list: ``top`` (the largest sum of parts) is the full width."""
    parts = [(k, float(components[k])) for k in COMPONENTS if (components.get(k) or 0) > 0]
    out, x = [], 0.0
    for k, v in parts:
        w = width * v / top if top > 0 else 0
        out.append({"name": k, "value": v, "x": round(x, 2), "w": round(w, 2), "color": COMPONENTS[k][0]})
        x += w
    return out


METRIC_SECTIONS = ("metric", "guardrail", "oec", "interleave")


def report_view(page: dict) -> dict:
    """The experiment report's rows split by section, and the two plots' data."""
    rows = page.get("report") or []
    variants = (page["experiment"].get("variants") or [])
    control = variants[0]["name"] if variants else None
    by = {s: [r for r in rows if r.get("section") == s] for s in ("srm", "sequential", "decision", "settings")}
    metrics = [r for r in rows if r.get("section") in METRIC_SECTIONS]
    known = {"srm", "sequential", "decision", "settings", *METRIC_SECTIONS}
    other = [r for r in rows if r.get("section") not in known]
    intervals = []
    for r in metrics:
        if r.get("variant") == control and r.get("section") != "interleave":
            continue
        relative = r.get("rel_low") is not None and r.get("rel_high") is not None
        low, high, value = ((r.get("rel_low"), r.get("rel_high"), r.get("rel_lift")) if relative
                            else (r.get("lift_low"), r.get("lift_high"), r.get("lift")))
        if low is None or high is None:
            continue
        label = f"{r.get('metric') or ''} · {r.get('variant') or ''}".strip(" ·")
        intervals.append({"label": label, "low": low, "high": high, "value": value, "relative": relative,
                          "section": r.get("section"),
                          "p": r["p_adjusted"] if r.get("p_adjusted") is not None else r.get("p_value")})
    plots = {}
    rel = [i for i in intervals if i["relative"]]
    ab = [i for i in intervals if not i["relative"]]
    if rel:
        plots["relative"] = {"type": "interval", "unit": "%", "rows": rel}
    if ab:
        plots["absolute"] = {"type": "interval", "unit": "", "rows": ab}
    bounds = page.get("boundaries") or []
    if bounds:
        # an infinite boundary (a look that spends no alpha) comes as the string "Infinity": not drawn
        finite = [b for b in bounds if isinstance(b.get("z_boundary"), int | float) and b["z_boundary"] < 1e6]
        plots["sequential"] = {
            "type": "sequential",
            "looks": [{"x": b["info_fraction"], "z": b["z_boundary"], "look": b["look"]} for b in finite],
            "observed": [{"label": o["variant"], "x": min(page.get("info_fraction") or 0, 1.0), "z": o["z"]}
                         for o in page.get("observed") or [] if o.get("z") is not None
                         and page.get("info_fraction") is not None]}
    # users per variant: the SRM rows' when they name variants, else the primary metric's rows
    split = [(r["variant"], r.get("n")) for r in by["srm"] if r.get("variant")] or [
        (r["variant"], r.get("n")) for r in metrics
        if r.get("section") == "metric" and r.get("metric") == page["experiment"].get("primary_metric")
        and r.get("variant")]
    total_weight = sum(float(v.get("weight") or 0) for v in variants) or 1
    weights = {v["name"]: float(v.get("weight") or 0) / total_weight for v in variants}
    total = sum(n or 0 for _, n in split)
    split = [{"variant": v, "n": n, "share": (n or 0) / total if total else None, "expected": weights.get(v)}
             for v, n in split]
    srm_bad = any((r.get("p_value") is not None and r["p_value"] < 0.001) or
                  "mismatch" in str(r.get("note") or "").lower() or str(r.get("decision") or "").startswith("invalid")
                  for r in by["srm"])
    has = {k: any(r.get(k) is not None for r in metrics) for k in ("cuped_lift", "p_better", "p_adjusted", "note")}
    return {"control": control, "srm": by["srm"], "srm_bad": srm_bad, "srm_empty": not total, "split": split,
            "metrics": metrics, "has": has, "sequential": by["sequential"], "decision": by["decision"],
            "settings": by["settings"], "other": other, "plots": plots}
