"""What the API process keeps: the two connection pools, and for degraded answers only, the
tenant of each key seen and each tenant's last-known popular list (refreshed periodically).
Nothing here is model state: every answer that is not degraded comes from the database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from app.api.errors import ApiError, from_db, unavailable
from app.api.metrics import DEGRADED, POOL
from app.settings import Settings

log = logging.getLogger("pgreco.api")


def unreachable(exc: Exception) -> bool:
    """The database is slow or unreachable (read answers degrade, writes fail with 503), as
    opposed to an error about the request itself (a bad key, bad input: answered as such)."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate or ""
    return not state or state[:2] in ("08", "53", "57")



def _timeout(ms: int):
    async def configure(conn: psycopg.AsyncConnection) -> None:
        await conn.execute(f"SET statement_timeout = {int(ms)}")
        await conn.execute("SET application_name = 'pgreco-api'")
    return configure


@dataclass
class ApiState:
    settings: Settings
    url: str
    reads: AsyncConnectionPool = field(init=False)
    writes: AsyncConnectionPool = field(init=False)
    tenants: dict[bytes, str] = field(default_factory=dict)      # key hash -> tenant slug
    popular: dict[str, list[str]] = field(default_factory=dict)  # tenant slug -> feature ids
    _tasks: set[asyncio.Task] = field(default_factory=set)

    def __post_init__(self) -> None:
        s = self.settings
        self.reads = AsyncConnectionPool(self.url, min_size=min(2, s.api_pool_size), max_size=s.api_pool_size,
                                         kwargs={"autocommit": True}, configure=_timeout(s.api_timeout_ms),
                                         open=False, name="reads", reconnect_timeout=5)
        self.writes = AsyncConnectionPool(self.url, min_size=1, max_size=s.api_write_pool_size,
                                          kwargs={"autocommit": True}, configure=_timeout(s.api_write_timeout_ms),
                                          open=False, name="writes", reconnect_timeout=5)

    async def open(self) -> None:
        # the server starts even when the database is down: reads degrade, /readyz says so
        await self.reads.open(wait=False)
        await self.writes.open(wait=False)
        self._spawn(self._refresh_loop())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.reads.close()
        await self.writes.close()

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- queries ---------------------------------------------------------------------------

    async def read(self, sql: str, params: tuple) -> str:
        """One statement on the read pool; the first column of its one row."""
        async with self.reads.connection(timeout=self.settings.api_pool_timeout) as conn:
            cur = await conn.execute(sql, params)
            return (await cur.fetchone())[0]

    async def write(self, sql: str, params: tuple | dict, what: str):
        """One statement on the write pool; the first column of its one row. Failures are
        ApiErrors: 503 when the database is slow or unreachable, else mapped by SQLSTATE."""
        try:
            async with self.writes.connection(timeout=self.settings.api_pool_timeout) as conn:
                cur = await conn.execute(sql, params)
                return (await cur.fetchone())[0]
        except (psycopg.Error, PoolTimeout) as exc:
            if isinstance(exc, psycopg.errors.QueryCanceled):
                raise ApiError(503, "timeout", f"the database took too long: {what} was cancelled",
                               hint="Nothing was stored. Send smaller batches or retry later.") from exc
            if unreachable(exc):
                raise unavailable(what) from exc
            raise from_db(exc) from exc

    # --- degraded answers ------------------------------------------------------------------

    def seen(self, key: bytes) -> None:
        """A key that just worked: learn its tenant (once) for degraded answers."""
        if key not in self.tenants:
            self.tenants[key] = ""  # looked up once
            self._spawn(self._learn(key))

    async def _learn(self, key: bytes) -> None:
        with contextlib.suppress(psycopg.Error, PoolTimeout):
            slug = await self.read("SELECT reco.api_tenant(%s)", (key,))
            self.tenants[key] = slug
            if slug not in self.popular:
                await self._refresh(slug)

    async def _refresh(self, slug: str) -> None:
        with contextlib.suppress(psycopg.Error, PoolTimeout):
            self.popular[slug] = json.loads(await self.read("SELECT reco.api_popular(%s)", (slug,)))

    async def _refresh_loop(self) -> None:
        last = 0.0
        while True:
            now = time.monotonic()
            if now - last >= self.settings.api_popular_refresh:
                last = now
                for slug in {s for s in self.tenants.values() if s}:
                    await self._refresh(slug)
            for name, pool in (("reads", self.reads), ("writes", self.writes)):
                stats = pool.get_stats()
                POOL.labels(name, "size").set(stats.get("pool_size", 0))
                POOL.labels(name, "available").set(stats.get("pool_available", 0))
                POOL.labels(name, "waiting").set(stats.get("requests_waiting", 0))
            await asyncio.sleep(2.0)

    def degraded(self, route: str, key: bytes, body: dict, k: int, exclude: str | None = None) -> dict:
        """The last-known popular list for the key's tenant, or 503 when the key was never seen
        working (it cannot be checked now, and an unchecked key never gets data)."""
        slug = self.tenants.get(key)
        if not slug or slug not in self.popular:
            raise unavailable("the request")
        DEGRADED.labels(route).inc()
        ids = [f for f in self.popular[slug] if f != exclude][:k]
        n = len(ids)
        body["items"] = [{"rank": i + 1, "feature_id": f, "score": round((n - i) / n, 4)} for i, f in enumerate(ids)]
        body["variant"] = None
        body["degraded"] = True
        return body
