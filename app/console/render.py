"""The console's rendering: the Jinja2 templates, the filters they format values with, and the
security headers every page carries."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).resolve().parent
PREFIX = "/console"


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def when(value: Any, seconds: bool = False) -> str:
    """An ISO time from SQL as 'YYYY-MM-DD HH:MM' (UTC)."""
    t = parse_time(value)
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


def base_path(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}{PREFIX}"


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("tenant", None)
    context.setdefault("csrf", getattr(request.state, "csrf", ""))  # the logout form's (page_data sets it)
    html = env.get_template(template).render(base=base_path(request), page=template.removesuffix(".html"), **context)
    return HTMLResponse(html, status_code=status, headers={
        "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store", "X-Frame-Options": "DENY"})


def not_found(request: Request, what: str, tenant: str | None = None) -> HTMLResponse:
    return render(request, "error.html", status=404, title="Not found", message=what, tenant=tenant)
