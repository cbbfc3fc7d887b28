"""Errors as HTTP answers, in one place: every error body is
``{"error": {"status", "code", "message", "hint"?, "fields"?, "sqlstate"?}}``, and database errors
are mapped by SQLSTATE (class first, a few codes exactly). The handlers below cover every error
the app can answer: its own (ApiError), the database's, validation, the routing's (404, 405),
a body that is too large (413) or not JSON, and anything unexpected (500, logged)."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("pgreco.api")

#: HTTP statuses the routing and the framework raise -> code
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 406: "not_acceptable", 413: "body_too_large",
              415: "unsupported_media_type", 429: "rate_limited"}

#: exact SQLSTATEs -> (HTTP status, code)
SQLSTATES: dict[str, tuple[int, str]] = {
    "28000": (401, "unauthorized"),          # invalid_authorization_specification (reco.api_tenant)
    "P0002": (404, "not_found"),             # no_data_found: unknown feature, user, tenant
    "22023": (422, "invalid_parameter"),     # invalid_parameter_value
    "23505": (409, "conflict"),              # unique_violation
    "57014": (503, "timeout"),               # query_canceled: the statement timeout
    "40001": (503, "retry"),                 # serialization_failure
    "40P01": (503, "retry"),                 # deadlock_detected
}
#: SQLSTATEs of a schema that is not what this code calls: the API's functions, tables or grants
#: are missing (a database not migrated, or migrated by an older release) -> 503 with the fix
NOT_MIGRATED = {"3F000",   # invalid_schema_name
                "42P01",   # undefined_table
                "42883",   # undefined_function
                "42501"}   # insufficient_privilege: reco_api's grants come with the migrations
#: the 503 responses' documentation (OpenAPI) adds this to what else a route's 503 means
NOT_MIGRATED_DOC = "; or not_migrated: its schema is older than the code (run reco migrate)"
#: SQLSTATE classes -> (HTTP status, code)
CLASSES: dict[str, tuple[int, str]] = {
    "22": (422, "invalid_data"),
    "23": (409, "conflict"),
    "08": (503, "database_unavailable"),
    "53": (503, "database_busy"),
    "55": (409, "conflict"),         # object_not_in_prerequisite_state: e.g. starting a stopped experiment
    "57": (503, "database_unavailable"),
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, hint: str | None = None,
                 fields: list[dict[str, Any]] | None = None, sqlstate: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.hint, self.fields, self.sqlstate, self.headers = hint, fields, sqlstate, headers

    def body(self) -> dict:
        err: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.hint:
            err["hint"] = self.hint
        if self.fields:
            err["fields"] = self.fields
        if self.sqlstate:
            err["sqlstate"] = self.sqlstate
        return {"error": err}


def from_db(exc: psycopg.Error) -> ApiError:
    """The HTTP answer to a database error."""
    state = exc.sqlstate or ""
    if not state and isinstance(exc, psycopg.DataError):
        # refused by the driver before it reached the server: a value PostgreSQL cannot hold (NUL in
        # text), i.e. the request's data
        return ApiError(422, "invalid_data", str(exc) or "a value the database cannot store")
    if state in NOT_MIGRATED:
        return ApiError(503, "not_migrated", "the database's schema is not the one this API needs",
                        hint="Run `reco migrate` against the API's database; GET /readyz says what is pending.",
                        sqlstate=state)
    status, code = SQLSTATES.get(state) or CLASSES.get(state[:2]) or (
        (503, "database_unavailable") if isinstance(exc, psycopg.OperationalError) else (500, "database_error"))
    diag = exc.diag
    message = diag.message_primary or str(exc) or "database error"
    if status >= 500 and state not in SQLSTATES and not state.startswith(("08", "53", "57")):
        message = "unexpected database error"  # no internals in the answer; the log has them
    return ApiError(status, code, message, hint=diag.message_hint, sqlstate=state or None,
                    headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


def invalid(fields: list[dict[str, str]], code: str = "validation_error") -> ApiError:
    """422 listing each field and its reason (the message joins them)."""
    return ApiError(422, code, "; ".join(f"{f['field']}: {f['reason']}" for f in fields), fields=fields)


def unavailable(what: str, *, read: bool = False) -> ApiError:
    """503 for a request that did not reach the database; a write's hint says nothing was stored
    (a read stores nothing anyway)."""
    return ApiError(503, "database_unavailable",
                    f"the database is unreachable or too slow: {what} was not done",
                    hint=("" if read else "Nothing was stored. ")
                    + "Retry later; GET /readyz tells when the database is back.")


class BodyTooLarge(StarletteHTTPException):
    """Raised while the body is read (app.api.limits.BodyLimit): FastAPI passes HTTPExceptions
    from the body's reading through unchanged, so this one reaches its handler as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit:,} bytes")
        self.limit = limit


def too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the request body is larger than the limit of {limit:,} bytes",
                    hint="Split the batch into smaller requests (the limit is RECO_API_MAX_BODY_BYTES).",
                    fields=[{"field": "body", "reason": f"at most {limit} bytes"}])


def reason(message: str) -> str:
    """pydantic's message without its 'Value error, ' prefix (our validators' own words)."""
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def request_id(request: Request) -> str:
    return request.scope.get("reco.request_id", "")


async def api_error_handler(request: Request, exc: ApiError) -> JSONResponse:
    if exc.code == "not_migrated":  # the operator's to fix, and every request will say so
        log.warning("%s %s answered 503 not_migrated (request_id=%s): %s", request.method, request.url.path,
                    request_id(request), exc.__cause__ or exc)
    elif exc.status >= 500 and exc.status != 503:
        cause = exc.__cause__ or exc
        log.error("%s %s answered %d %s (request_id=%s): %s", request.method, request.url.path, exc.status,
                  exc.code, request_id(request), cause, exc_info=cause)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def db_error_handler(request: Request, exc: psycopg.Error) -> JSONResponse:
    error = from_db(exc)
    error.__cause__ = exc
    return await api_error_handler(request, error)


async def validation_error_handler(_: Request, exc: RequestValidationError) -> JSONResponse:
    fields = []
    for e in exc.errors():
        if e.get("type") == "json_invalid":  # loc: ("body", position)
            detail = (e.get("ctx") or {}).get("error", "")
            fields.append({"field": "body", "reason": f"not valid JSON: {detail or e['msg']} "
                                                      f"(at character {e['loc'][-1]})"})
        else:
            fields.append({"field": ".".join(str(p) for p in e["loc"]), "reason": reason(e["msg"])})
    return JSONResponse(invalid(fields).body(), status_code=422)


async def http_error_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """The routing's and the framework's errors (404 no route, 405, a body that cannot be parsed,
    413) in the documented shape instead of FastAPI's {"detail": ...}."""
    status = exc.status_code
    path = request.url.path[:200]
    headers = dict(exc.headers or {})
    if isinstance(exc, BodyTooLarge):
        error = too_large(exc.limit)
        headers["Connection"] = "close"  # the rest of the body is not read
    elif status == 404:
        error = ApiError(404, "not_found", f"no route {request.method} {path}",
                         hint="The routes are listed at /docs (and /openapi.json).")
    elif status == 405:
        allowed = headers.get("Allow") or headers.get("allow") or ""
        error = ApiError(405, "method_not_allowed", f"{request.method} is not allowed on {path}",
                         hint=f"Allowed: {allowed}." if allowed else None)
    elif status == 400 and isinstance(exc.__cause__, RecursionError):
        error = invalid([{"field": "body", "reason": "JSON nested too deeply"}])
    else:
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
        message = exc.detail if isinstance(exc.detail, str) and exc.detail else phrase
        error = ApiError(status, HTTP_CODES.get(status, phrase.lower().replace(" ", "_")), message)
    return JSONResponse(error.body(), status_code=error.status, headers={**headers, **(error.headers or {})})


async def internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Anything unexpected: 500 in the documented shape (the server logs the traceback)."""
    log.error("%s %s failed (request_id=%s)", request.method, request.url.path, request_id(request),
              exc_info=exc)
    rid = request_id(request)
    return JSONResponse(ApiError(500, "internal_error", "unexpected error",
                                 hint=f"The server log has the details (request id {rid}).").body(),
                        status_code=500, headers={"X-Request-ID": rid} if rid else None)
