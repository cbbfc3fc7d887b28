"""Checks every request passes before routing (the outermost middleware, so nothing else runs for a
refused one):

- the Host header must name a trusted host (``RECO_TRUSTED_HOSTS``): a page on another site whose name
  was re-pointed at this server (DNS rebinding) is refused with 400, not answered;
- the path and the query string must be UTF-8 once percent-decoded: the server would otherwise read
  invalid bytes as U+FFFD, so different byte strings would become one id (422, field path or query)."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import ApiError


def host_name(header: str) -> str:
    """The host of a Host header, lower case, without the port and IPv6 brackets."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def host_trusted(host: str, trusted: tuple[str, ...]) -> bool:
    return any(name == "*" or host == name or (name.startswith("*.") and host.endswith(name[1:]))
               for name in trusted)


def utf8_problem(scope: Scope) -> tuple[str, str] | None:
    """(field, reason) when the percent-decoded path or query string is not UTF-8."""
    raw_path = scope.get("raw_path") or b""
    for field, raw in (("path", raw_path.partition(b"?")[0]), ("query", scope.get("query_string") or b"")):
        if b"%" not in raw:
            continue  # the server decoded plain bytes itself (as UTF-8 or refused them)
        try:
            unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return field, "percent-encoded bytes that are not UTF-8"
    return None


class RequestGuard:
    def __init__(self, app: ASGIApp, trusted_hosts: tuple[str, ...]) -> None:
        self.app = app
        self.trusted = trusted_hosts
        self.any_host = "*" in trusted_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        error = None
        if not self.any_host:
            header = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), "")
            if not host_trusted(host_name(header), self.trusted):
                error = ApiError(400, "untrusted_host", "this server does not answer to that Host header",
                                 hint="Reach it by a name listed in RECO_TRUSTED_HOSTS (the operator sets it).",
                                 fields=[{"field": "header.host", "reason": "not a trusted host"}])
        if error is None:
            problem = utf8_problem(scope)
            if problem:
                field, reason = problem
                error = ApiError(422, "validation_error", f"{field}: {reason}",
                                 hint="Percent-encode ids as UTF-8 (RFC 3986).",
                                 fields=[{"field": field, "reason": reason}])
        if error is None:
            await self.app(scope, receive, send)
            return
        await JSONResponse(error.body(), error.status)(scope, receive, send)
