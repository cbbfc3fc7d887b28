"""Fairness between tenants: each tenant's budget of what is expensive, and what the API process
keeps to enforce it (app.api.fairness applies it to the requests).

A budget (``Budget``) is the process defaults (``RECO_TENANT_*``, app.settings) overridden column by
column by the tenant's row of ``reco.tenant_budgets`` (0: unlimited). The API learns a key's tenant and
budget with one call of ``reco.api_tenant_budget`` and keeps it ``tenant_budget_ttl`` seconds (read
again in the background when it is older: a request never waits for a refresh, only for the first
look-up of a key). While the database cannot answer, nothing is enforced for keys never looked up
(their requests are answered degraded or 503 anyway).

Per tenant, in this worker process (like the per-key rate limit, app.api.ratelimit: with
``reco serve --workers N`` a tenant may get up to N times its budget):

- ``Bucket``: a token bucket that may be borrowed from (events, body bytes, console pages), so that
  a batch larger than the rate still passes once and the tenant then waits its cost off;
- ``Slots``: how many statements the tenant runs at once in a pool (reads, writes, console); past
  them a request waits in line, first come first served, up to a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields, replace

import psycopg
from psycopg_pool import PoolTimeout

from app.api.limits import MAX_BATCH
from app.settings import Settings

#: console pages a tenant may load at once after a quiet spell (its bucket's size)
CONSOLE_BURST = 10.0


@dataclass(frozen=True)
class Budget:
    """What a tenant may use (0: unlimited). The names are the columns of reco.tenant_budgets and,
    prefixed with ``tenant_``, the settings that give their defaults."""

    events_per_s: float
    bytes_per_s: float
    read_statements: int
    write_statements: int
    console_per_s: float
    console_statements: int

    @classmethod
    def defaults(cls, settings: Settings) -> Budget:
        return cls(**{f.name: getattr(settings, f"tenant_{f.name}") for f in fields(cls)})

    def overridden(self, overrides: dict) -> Budget:
        """These defaults with a tenant's overrides (reco.api_tenant_budget's "budget")."""
        kinds = {f.name: type(getattr(self, f.name)) for f in fields(self)}
        return replace(self, **{k: kinds[k](v) for k, v in overrides.items() if k in kinds and v is not None})


def amount(value: float) -> str:
    """A budget's number for people: 1,000,000 rather than 1e+06."""
    return f"{int(value):,}" if value == int(value) else f"{value:,.3g}"


def budget_table(defaults: Budget, overrides: dict) -> list[dict]:
    """A tenant's budgets for `reco tenants budget`: name, value, and where it comes from."""
    rows = []
    for f in fields(defaults):
        own = overrides.get(f.name)
        value = getattr(defaults.overridden(overrides), f.name)
        rows.append({"budget": f.name, "value": "unlimited" if not value else amount(value),
                     "from": "the tenant's own" if own is not None else f"default (RECO_TENANT_{f.name.upper()})"})
    return rows


class Bucket:
    """A token bucket of ``size`` refilled at ``rate`` a second, that may be borrowed from: a request
    passes when the bucket holds min(cost, size), and then takes its whole cost (the level may go below
    zero: a body larger than the bucket passes once the bucket is full, and the tenant then waits its
    cost off). Starts full."""

    __slots__ = ("level", "at")

    def __init__(self, size: float, now: float) -> None:
        self.level, self.at = size, now

    def take(self, cost: float, rate: float, size: float, now: float) -> float:
        """0.0 when ``cost`` may pass (taken), else the seconds until it may (nothing taken)."""
        wait = self.wait(cost, rate, size, now)
        if not wait:
            self.level -= cost
        return wait

    def wait(self, cost: float, rate: float, size: float, now: float) -> float:
        """The seconds until ``cost`` may pass, 0.0 if it may now (nothing taken)."""
        self.level = min(size, self.level + (now - self.at) * rate)
        self.at = now
        need = min(cost, size)
        return 0.0 if self.level >= need else (need - self.level) / rate

    def charge(self, cost: float, rate: float, size: float, now: float) -> None:
        """Take ``cost`` whatever the level (a body whose size was known only once read)."""
        self.level = min(size, self.level + (now - self.at) * rate) - cost
        self.at = now

    def give_back(self, cost: float) -> None:
        """A request refused after it was charged (its tenant's statements were all busy)."""
        self.level += cost


class Slots:
    """At most ``limit`` holders at once (0: no limit); the others wait in line, first come first
    served, each up to its own deadline. A freed slot passes straight to the first in line."""

    __slots__ = ("busy", "line")

    def __init__(self) -> None:
        self.busy = 0
        self.line: deque[asyncio.Future] = deque()

    async def acquire(self, limit: int, timeout: float) -> bool:
        """True once a slot is held (release it), False when none came free within ``timeout``."""
        if limit <= 0:
            return True
        while self.line and self.line[0].done():
            self.line.popleft()
        if self.busy < limit and not self.line:
            self.busy += 1
            return True
        loop = asyncio.get_running_loop()
        turn = loop.create_future()
        self.line.append(turn)
        timer = loop.call_later(timeout, lambda: turn.done() or turn.set_result(False))
        try:
            granted = await turn
        except asyncio.CancelledError:  # the client went away: a slot handed over meanwhile goes on
            if turn.done() and not turn.cancelled() and turn.result():
                self.release(limit)
            raise
        finally:
            timer.cancel()
        if not granted:
            with contextlib.suppress(ValueError):
                self.line.remove(turn)
        return granted

    def release(self, limit: int) -> None:
        if limit <= 0:
            return
        while self.line:
            turn = self.line.popleft()
            if not turn.done():
                turn.set_result(True)  # the slot changes hands: busy stays
                return
        self.busy -= 1


@dataclass
class Usage:
    """What one tenant is using in this process."""

    events: Bucket
    bytes: Bucket
    console: Bucket
    #: body bytes per event of the tenant's batches (a moving average; 0 before the first): what an
    #: events POST will cost is estimated from its Content-Length before the body is read
    event_bytes: float = 0.0
    reads: Slots = field(default_factory=Slots)
    writes: Slots = field(default_factory=Slots)
    console_slots: Slots = field(default_factory=Slots)


@dataclass(frozen=True)
class Tenant:
    """A key's tenant and its budget, as last read from the database."""

    slug: str
    budget: Budget
    usage: Usage
    read_at: float


Lookup = Callable[[str], Awaitable[str]]


class TenantBudgets:
    """Key hash → tenant and budget (cached), tenant → usage. ``lookup`` runs
    ``SELECT reco.api_tenant_budget(key)`` (ApiState.read)."""

    #: seconds without look-ups after one failed because the database could not answer
    PAUSE = 1.0

    def __init__(self, settings: Settings, lookup: Lookup, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.defaults = Budget.defaults(settings)
        self.lookup = lookup
        self.clock = clock
        self.keys: dict[str, Tenant] = {}
        self.usage: dict[str, Usage] = {}
        self._pending: dict[str, asyncio.Future] = {}
        self._paused_until = 0.0
        self._tasks: set[asyncio.Task] = set()

    def usage_of(self, slug: str) -> Usage:
        usage = self.usage.get(slug)
        if usage is None:
            now, b = self.clock(), self.defaults
            usage = self.usage[slug] = Usage(events=Bucket(self.events_size(b), now),
                                              bytes=Bucket(self.bytes_size(b), now),
                                              console=Bucket(self.console_size(b), now))
        return usage

    # bucket sizes: one full batch, one largest body, CONSOLE_BURST pages (or a second's worth if more)
    def events_size(self, b: Budget) -> float:
        return max(float(MAX_BATCH), b.events_per_s)

    def bytes_size(self, b: Budget) -> float:
        return max(float(self.settings.api_max_body_bytes), b.bytes_per_s)

    def console_size(self, b: Budget) -> float:
        return max(CONSOLE_BURST, b.console_per_s)

    async def tenant(self, key: str) -> Tenant | None:
        """The key's tenant and budget: cached; looked up on first sight (one round trip, shared by
        the requests that arrive meanwhile); refreshed in the background past tenant_budget_ttl.
        None for a key the database refuses, or when it cannot answer (nothing is enforced then)."""
        known = self.keys.get(key)
        now = self.clock()
        if known is not None:
            if now - known.read_at > self.settings.tenant_budget_ttl and key not in self._pending:
                self._start(key)
            return known
        if now < self._paused_until:
            return None
        pending = self._pending.get(key) or self._start(key)
        return await asyncio.shield(pending)

    def _start(self, key: str) -> asyncio.Future:
        task = asyncio.ensure_future(self._read(key))
        self._pending[key] = task
        self._tasks.add(task)
        task.add_done_callback(lambda t: (self._pending.pop(key, None), self._tasks.discard(t)))
        return task

    async def _read(self, key: str) -> Tenant | None:
        try:
            answer = await self.lookup(key)
        except psycopg.errors.InvalidAuthorizationSpecification:
            self.keys.pop(key, None)  # revoked: its requests get 401 from the database
            return None
        except (psycopg.Error, PoolTimeout):
            self._paused_until = self.clock() + self.PAUSE
            return self.keys.get(key)  # keep enforcing what was known
        data = json.loads(answer) if isinstance(answer, str) else answer
        tenant = Tenant(data["tenant"], self.defaults.overridden(data.get("budget") or {}),
                        self.usage_of(data["tenant"]), self.clock())
        self.keys[key] = tenant
        return tenant
