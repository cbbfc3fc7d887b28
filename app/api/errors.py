"""Errors as HTTP answers, in one place: every error body is
``{"error": {"status", "code", "message", "hint"?, "fields"?, "sqlstate"?}}``, and database errors
are mapped by SQLSTATE (class first, a few codes exactly)."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

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
#: SQLSTATE classes -> (HTTP status, code)
CLASSES: dict[str, tuple[int, str]] = {
    "22": (422, "invalid_data"),
    "23": (409, "conflict"),
    "08": (503, "database_unavailable"),
    "53": (503, "database_busy"),
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


def unavailable(what: str) -> ApiError:
    return ApiError(503, "database_unavailable",
                    f"the database is unreachable or too slow: {what} was not done",
                    hint="Nothing was stored. Retry later; GET /readyz tells when the database is back.")


async def api_error_handler(_: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def db_error_handler(request: Request, exc: psycopg.Error) -> JSONResponse:
    return await api_error_handler(request, from_db(exc))


async def validation_error_handler(_: Request, exc: RequestValidationError) -> JSONResponse:
    fields = [{"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()]
    return JSONResponse(invalid(fields).body(), status_code=422)
