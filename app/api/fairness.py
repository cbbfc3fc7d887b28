"""Fairness between tenants: the budgets of app.api.budgets applied to the requests.

- ``Fairness`` (pure ASGI, in front of every /v1 route): a write (POST, PUT, PATCH, DELETE) is
  charged its Content-Length against the tenant's bytes a second before a byte of the body is read or
  parsed (an events POST is also refused then when its tenant's events bucket cannot hold what its
  size likely carries, at the tenant's bytes per event so far); then every request takes one of its
  tenant's statements of the pool it uses (reads or writes), waiting in line up to api_pool_timeout,
  and gives it back when answered.
- ``charge_events``: the events handler charges the events of a batch once they are parsed, before
  the database is called.
- ``console_budget``: the console's hook (a dependency of its router): pages a second and queries
  at once per tenant.

Past a budget: 429 ``over_budget`` in the documented error shape, ``Retry-After`` in whole seconds
(when the budget has room again: refilled bucket, or 1 s for a busy tenant's statements), counted in
``reco_tenant_over_budget_total{budget}``. Requests without a key, or with a key the database refuses,
pass through: their handler answers 401 as before."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import Request

from app.api.budgets import Bucket, Slots, Tenant, TenantBudgets, amount
from app.api.errors import ApiError
from app.api.metrics import OVER_BUDGET
from app.api.ratelimit import retry_after

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EVENTS = "/v1/events"
#: seconds a console page waits for its tenant's console query to finish before 429
CONSOLE_WAIT = 5.0

WHAT = {"events_per_s": "events a second", "bytes_per_s": "request bytes a second",
        "read_statements": "read statements at once", "write_statements": "write requests at once",
        "console_per_s": "console pages a second", "console_statements": "console queries at once"}


def over_budget(tenant: Tenant, name: str, wait: float) -> ApiError:
    """The 429 of a tenant over its budget ``name`` (a field of Budget), to retry after ``wait`` s."""
    OVER_BUDGET.labels(name).inc()
    seconds = retry_after(wait)
    limit = getattr(tenant.budget, name)
    return ApiError(429, "over_budget",
                    f"tenant {tenant.slug} is over its budget of {amount(limit)} {WHAT[name]}",
                    hint=f"Retry after {seconds} s (the Retry-After header). The budget is RECO_TENANT_{name.upper()} "
                         f"or the tenant's own: `reco tenants budget {tenant.slug}` shows it.",
                    headers={"Retry-After": str(seconds)})


def _take(bucket: Bucket, tenant: Tenant, name: str, cost: float, size: float, now: float) -> None:
    """Charge ``cost`` to a bucket of the tenant's budget ``name`` (unlimited: 0); 429 when over."""
    rate = getattr(tenant.budget, name)
    if rate > 0:
        wait = bucket.take(cost, rate, size, now)
        if wait:
            raise over_budget(tenant, name, wait)


def _key(scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


def _length(scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return max(int(value), 0)
            except ValueError:
                return None
    return None


class Fairness:
    """Pure ASGI: the tenant's bytes a second (writes, before the body is read) and statements at once
    per pool, for every /v1 request with a key (see the module)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        state = getattr(scope["app"].state, "reco", None)
        key = _key(scope)
        tenant = await state.budgets.tenant(key) if key is not None and state is not None else None
        if tenant is None:
            await self.app(scope, receive, send)
            return
        budgets: TenantBudgets = state.budgets
        usage, budget = tenant.usage, tenant.budget
        write = scope["method"] in WRITES
        length = _length(scope) if write else None
        try:
            if length:
                _take(usage.bytes, tenant, "bytes_per_s", length, budgets.bytes_size(budget), budgets.clock())
                if scope["path"] == EVENTS and budget.events_per_s > 0:
                    _events_room(tenant, length, budgets)
            slots, name = (usage.writes, "write_statements") if write else (usage.reads, "read_statements")
            limit = getattr(budget, name)
            if not await slots.acquire(limit, state.settings.api_pool_timeout):
                if length and budget.bytes_per_s > 0:
                    usage.bytes.give_back(length)
                raise over_budget(tenant, name, 1.0)
        except ApiError as exc:
            await _refuse(send, exc, unread=write)
            return
        scope["reco.tenant"] = tenant
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        try:
            await self.app(scope, receive if length is not None or not write else counting_receive, send)
        finally:
            slots.release(limit)
            if received and budget.bytes_per_s > 0:  # a body without Content-Length: charged once read
                usage.bytes.charge(received, budget.bytes_per_s, budgets.bytes_size(budget), budgets.clock())


async def _refuse(send, error: ApiError, unread: bool) -> None:
    """The 429, before the body is read: the connection closes after it (the rest of a large body
    is not read through)."""
    body = json.dumps(error.body(), separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    if unread:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _events_room(tenant: Tenant, length: int, budgets: TenantBudgets) -> None:
    """429 before an events body is read when the tenant's events bucket cannot hold what it likely
    carries (its Content-Length at the tenant's bytes per event so far; at least one event): a batch
    that would be refused once parsed is not parsed."""
    usage = tenant.usage
    likely = max(1.0, length / usage.event_bytes) if usage.event_bytes else 1.0
    size = budgets.events_size(tenant.budget)
    wait = usage.events.wait(likely, tenant.budget.events_per_s, size, budgets.clock())
    if wait:
        if tenant.budget.bytes_per_s > 0:
            usage.bytes.give_back(length)
        raise over_budget(tenant, "events_per_s", wait)


def charge_events(request: Request, events: int) -> None:
    """Charge a parsed batch's events to its tenant's events a second (429 when over), before the
    database is called. Nothing for a request the Fairness middleware did not budget."""
    tenant: Tenant | None = request.scope.get("reco.tenant")
    if tenant is None or not events:
        return
    length = _length(request.scope)
    if length:
        per = length / events
        usage = tenant.usage
        usage.event_bytes = per if not usage.event_bytes else 0.8 * usage.event_bytes + 0.2 * per
    budgets: TenantBudgets = request.app.state.reco.budgets
    _take(tenant.usage.events, tenant, "events_per_s", events, budgets.events_size(tenant.budget), budgets.clock())


async def console_budget(request: Request) -> AsyncIterator[None]:
    """The console's hook (a dependency of its router): a page of a logged-in tenant costs one of its
    console pages a second and holds one of its console queries at once while it runs. Static files,
    the login form and requests without a key pass."""
    from app.console.auth import credential  # the console's own reading of its session cookie (or bearer key)

    state = getattr(request.app.state, "reco", None)
    auth = None if state is None or "/static/" in request.url.path else credential(request)
    tenant = await state.budgets.tenant(auth) if auth is not None else None
    if tenant is None:
        yield
        return
    budgets: TenantBudgets = state.budgets
    _take(tenant.usage.console, tenant, "console_per_s", 1, budgets.console_size(tenant.budget), budgets.clock())
    slots: Slots = tenant.usage.console_slots
    limit = tenant.budget.console_statements
    if not await slots.acquire(limit, CONSOLE_WAIT):
        raise over_budget(tenant, "console_statements", 1.0)
    try:
        yield
    finally:
        slots.release(limit)
