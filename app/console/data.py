"""The console's database access: each page is one read-only statement on the API's read pool (the
sessions' statements on the write pool), with its own statement timeout and at most SLOTS at a time
per process, run as the credential's tenant (reco.api_console_<page>)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from fastapi import Request
from fastapi.responses import Response
from psycopg_pool import PoolTimeout

from app.api.limits import text_problem
from app.console.auth import credential, csrf_for, session_token, to_login
from app.console.render import render

#: statement timeout of a console query (ms): pages aggregate, unlike the serving reads
TIMEOUT_MS = 15_000
#: console queries at a time per process (each holds a read connection while it runs)
SLOTS = 2
#: seconds a page waits for a free read connection
POOL_WAIT = 5.0


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
