"""Bounded input: the request body's size (enforced while it is read) and the limits of each field,
in one place. The pydantic models (app.api.models) and the batch endpoints (app.api.catalog) use
these; docs/guides/rest.md ("Limits") lists them.

Strings must not hold NUL (PostgreSQL text cannot), numbers must be finite (JSON has no NaN or
Infinity, though Python's parser reads them), free-form JSON (props, attributes) is bounded in
serialized size and nesting depth."""

from __future__ import annotations

import json
import math
from typing import Any

from app.api.errors import BodyTooLarge, too_large

MAX_ID = 200            # user_id, feature_id, plan_id, event_id (the database's own limit)
MAX_NAME = 200          # name, category
MAX_TEXT = 4000         # description
MAX_SHORT = 100         # occurred_at, kind, success as text
MAX_TAGS = 50           # tags per feature
MAX_TAG = 100           # characters per tag
MAX_JSON_BYTES = 16 * 1024   # props, attributes: serialized (compact JSON, UTF-8)
MAX_DEPTH = 8           # props, attributes: nesting (an object of scalars is depth 1)
MAX_DIMENSIONS = 4096   # a client embedding; it must also match the tenant's (see catalog)
MAX_BATCH = 10_000      # rows per batch request


# --- values ---------------------------------------------------------------------------------

SURROGATE = "contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not a character and cannot be stored"


def text_problem(value: str, limit: int | None = None) -> str | None:
    if "\x00" in value:
        return "contains a NUL character (\\u0000), which cannot be stored"
    if not value.isascii() and not _utf8(value):
        return SURROGATE
    if limit is not None and len(value) > limit:
        return f"longer than {limit} characters"
    return None


def number_problem(value: float) -> str | None:
    return None if math.isfinite(value) else "NaN and Infinity are not numbers (JSON has neither)"


def json_problem(value: Any, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_JSON_BYTES) -> tuple[str, str] | None:
    """The first problem of a free-form JSON value: (where in it, reason), or None. NUL in keys or
    strings, non-finite numbers, nesting deeper than max_depth, more than max_bytes serialized."""
    problem = _walk(value, max_depth, "")
    if problem:
        return problem
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > max_bytes:
        return "", f"{size:,} bytes of JSON, more than {max_bytes:,}"
    return None


def value_problem(value: Any, max_depth: int = MAX_DEPTH) -> tuple[str, str] | None:
    """The first NUL (in a string or a key), non-finite number or too deep nesting anywhere in a
    parsed JSON value: (where in it, reason), or None."""
    return _walk(value, max_depth, "")


def _walk(value: Any, depth_left: int, where: str) -> tuple[str, str] | None:
    if isinstance(value, str):
        reason = text_problem(value)
        return (where, reason) if reason else None
    if isinstance(value, float):
        reason = number_problem(value)
        return (where, reason) if reason else None
    if isinstance(value, dict | list):
        if depth_left <= 0:
            return where, "nested too deeply"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            if isinstance(k, str) and not k.isascii() and not _utf8(k):
                k = k.encode("utf-8", "backslashreplace").decode()  # the report names it, escaped
                here = f"{where}.{k}" if where else k
                return here, "a key " + SURROGATE
            here = f"{where}.{k}" if where else str(k)
            if isinstance(k, str) and "\x00" in k:
                return here, "a key contains a NUL character (\\u0000)"
            problem = _walk(v, depth_left - 1, here)
            if problem:
                return problem
    return None


# --- validators for pydantic (Annotated[..., AfterValidator(...)]) ---------------------------

def no_nul(value: str) -> str:
    reason = text_problem(value)
    if reason:
        raise ValueError(reason)
    return value


def _utf8(value: str) -> bool:
    """JSON may escape half of a surrogate pair ("\\ud800"); Python reads it into a str that UTF-8
    (and so PostgreSQL) cannot hold: the driver failed the whole batch."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def bounded_json(value: Any) -> Any:
    if value is None:
        return value
    problem = json_problem(value)
    if problem:
        where, why = problem
        raise ValueError(f"{where}: {why}" if where else why)
    return value


# --- events (free-form rows, checked here, then by the database) ------------------------------

#: the fields of an event the database reads, and their longest text
EVENT_FIELDS = {"event_id": MAX_ID, "user_id": MAX_ID, "feature_id": MAX_ID, "occurred_at": MAX_SHORT,
                "kind": MAX_SHORT, "success": MAX_SHORT}


def event_problem(row: Any) -> tuple[str, str] | None:
    """The first problem of one event that the database cannot report itself (it would reject
    the whole batch, or store it unbounded): (field, reason), or None."""
    if not isinstance(row, dict):
        return "(row)", "not a JSON object"
    for name, limit in EVENT_FIELDS.items():
        value = row.get(name)
        if isinstance(value, str):
            reason = text_problem(value, limit)
        elif isinstance(value, float):
            reason = number_problem(value)
        elif isinstance(value, dict | list):
            reason = None  # the database says "expected a string, number or boolean"
            problem = _walk(value, MAX_DEPTH, name)
            if problem:
                return problem
        else:
            reason = None
        if reason:
            return name, reason
    props = row.get("props")
    if props is not None:
        problem = json_problem(props)
        if problem:
            where, why = problem
            return f"props.{where}" if where else "props", why
    return None


def event_row(row: dict) -> dict:
    """The fields the database reads (others are ignored there; here they are not even sent)."""
    return {k: row[k] for k in (*EVENT_FIELDS, "props") if k in row}


# --- the body ------------------------------------------------------------------------------

class BodyLimit:
    """Pure ASGI: a request whose Content-Length is above the limit gets 413 before anything is
    read; otherwise the bytes are counted as they arrive and the reading stops with 413 once they
    pass the limit (a chunked body has no Content-Length). A body is never held above the limit."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await self._refuse(send, limit)
                    return
                break
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watching_send(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send, limit: int) -> None:
        body = json.dumps(too_large(limit).body(), separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
