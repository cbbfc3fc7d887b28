"""The console's credentials and forms: the session cookie (or a bearer key), the CSRF token of
each form, where the login form sends back to, and the login page itself. The database checks the
credential (app.console.data.page_data); nothing here opens a page."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from urllib.parse import parse_qs, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from app.console.render import base_path, q, render

COOKIE = "pgreco_console"
#: the login form's CSRF cookie (double submit: the form carries the same value)
LOGIN_COOKIE = "pgreco_console_login"


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


def form_token(form: dict[str, list[str]]) -> str:
    return (form.get("csrf") or [""])[0]


async def read_form(request: Request) -> dict[str, list[str]]:
    return parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def safe_next(base: str, value: str | None) -> str:
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
                  next=safe_next(base_path(request), next_url), csrf=token)
    if fresh:
        resp.set_cookie(LOGIN_COOKIE, token, path=base_path(request), httponly=True, samesite="strict",
                        secure=is_https(request))
    return resp


def to_login(request: Request, why: str | None = None, forget: bool = False) -> RedirectResponse:
    """An unauthenticated request: to the login form, which comes back here afterwards."""
    target = f"{base_path(request)}/login?next={q(_here(request))}" + (f"&why={why}" if why else "")
    resp = RedirectResponse(target, status_code=303)
    if forget:
        resp.delete_cookie(COOKIE, path=base_path(request))
    return resp


def same_origin(request: Request) -> bool:
    """A form post from this server's own pages (no cross-site login or logout)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def login_token_ok(request: Request, form: dict[str, list[str]]) -> bool:
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    return bool(_TOKEN.fullmatch(cookie)) and hmac.compare_digest(cookie, form_token(form))


def is_https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"

