"""What the API process keeps: the two connection pools, and for degraded answers only, the
tenant of each key seen and each tenant's last-known popular list (refreshed periodically).
Nothing here is model state: every answer that is not degraded comes from the database.

Faults handled here: a pooled connection is checked before use (after a database restart the
pool's idle connections are dead: they are replaced, not handed to a request), serialization
failures and deadlocks are retried, a key serves degraded answers only while the database
confirmed it recently (api_key_ttl; a revoked key is forgotten as soon as the database says so),
a write whose connection dies after its statement was sent answers 503 saying that it may or may
not have been done (it may have committed before the answer was lost), never "nothing was stored",
and the pools reconnect within half a second of the database's return (``Pool``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import select
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from app.api import offload
from app.api.budgets import TenantBudgets
from app.api.errors import ApiError, from_db, unavailable
from app.api.keyguard import UnknownKeys
from app.api.metrics import DEGRADED, POOL, RETRIES, STALE_CONNECTIONS
from app.api.ratelimit import RateLimiter
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


#: serialization_failure and deadlock_detected: the statement was rolled back whole, so running it
#: again is safe; tried this many times in all
RETRIED = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
ATTEMPTS = 3


def _socket_readable(conn: psycopg.AsyncConnection) -> bool:
    """Whether an idle connection's socket has something to read: nothing is expected between
    statements, so this is the server's goodbye (a restart, a crash, pg_terminate_backend: an
    error message and the end of the stream) or, rarely, an asynchronous notice."""
    try:
        fd = conn.pgconn.socket
    except psycopg.OperationalError:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


async def alive(conn: psycopg.AsyncConnection) -> bool:
    """A pooled connection is usable: a poll of its socket (microseconds, no round trip) and, only
    when the server has sent something, a round trip to tell a notice from a dead connection."""
    if conn.closed or conn.broken:
        return False
    if not _socket_readable(conn):
        return True
    try:
        await conn.execute("")
        return True
    except psycopg.Error:
        return False


def where(url: str) -> str:
    """host:port (or the socket file) a libpq URL points to, for messages."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "the configured database"
    host = (info.get("host") or "localhost").split(",")[0]
    port = str(info.get("port") or 5432).split(",")[0]
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else f"{host}:{port}"


def _cause(exc: BaseException) -> tuple[bool, str]:
    """The useful end of a libpq connection error ('connection refused', 'no such file or
    directory'), and whether the server itself refused (FATAL: a role, a database, too many clients)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    text = text.rsplit("failed: ", 1)[-1].strip()
    refused = text.startswith(("FATAL:", "ERROR:"))
    if refused:
        return True, text.split(":", 1)[1].strip()
    return False, text[:1].lower() + text[1:]


class _Retry(AttemptWithBackoff):
    """A pool's reconnection attempts while the database is away: after 0.1 s, then every 0.15-0.5 s
    (psycopg_pool's own: after 1 s, then 2 s), so that the pools are whole again within half a second
    of the database's return (`reco bench soak` measures it). A refused connection costs the server
    nothing; the attempts still stop after reconnect_timeout, and start again when a request needs one."""

    INITIAL_DELAY = 0.1
    DELAY_BACKOFF = 1.5
    MAX_DELAY = 0.5

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, self.MAX_DELAY)


class Pool(AsyncConnectionPool):
    """AsyncConnectionPool reconnecting sooner (``_Retry``)."""

    async def _add_connection(self, attempt: AttemptWithBackoff | None = None, growing: bool = False) -> None:
        await super()._add_connection(attempt or _Retry(timeout=self.reconnect_timeout), growing=growing)


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
    limiter: RateLimiter = field(init=False)  # per key hash, in this worker process (app.api.ratelimit)
    budgets: TenantBudgets = field(init=False)  # per tenant, in this worker process (app.api.budgets)
    unknown_keys: UnknownKeys = field(init=False)  # per client address (app.api.keyguard)
    # the keys seen working, for degraded answers: kept as sent (the database hashes a key to check
    # it, and the periodic re-check needs the key), in this process's memory only
    tenants: dict[str, str] = field(default_factory=dict)      # key -> tenant slug
    popular: dict[str, list[str]] = field(default_factory=dict)  # tenant slug -> feature ids
    verified_at: dict[str, float] = field(default_factory=dict)  # key -> last confirmed (monotonic)
    used_at: dict[str, float] = field(default_factory=dict)      # key -> last request that worked
    _tasks: set[asyncio.Task] = field(default_factory=set)

    def __post_init__(self) -> None:
        s = self.settings
        self.limiter = RateLimiter(s.api_rate_limit, s.api_rate_burst)
        self.unknown_keys = UnknownKeys(s.api_unknown_key_rate, s.api_unknown_key_burst)
        self.budgets = TenantBudgets(s, lambda key: self.read("SELECT reco.api_tenant_budget(%s)", (key,)))
        self.reads = Pool(self.url, min_size=min(2, s.api_pool_size), max_size=s.api_pool_size,
                          kwargs={"autocommit": True}, configure=_timeout(s.api_timeout_ms),
                          open=False, name="reads", reconnect_timeout=5)
        self.writes = Pool(self.url, min_size=1, max_size=s.api_write_pool_size,
                           kwargs={"autocommit": True}, configure=_timeout(s.api_write_timeout_ms),
                           open=False, name="writes", reconnect_timeout=5)

    async def open(self) -> None:
        # the server starts even when the database is down: reads degrade, /readyz says so
        await self.reads.open(wait=False)
        await self.writes.open(wait=False)
        offload.start()  # the worker process that parses large batches (app.api.offload; one per process)
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

    @contextlib.asynccontextmanager
    async def connection(self, pool: AsyncConnectionPool, timeout: float | None = None
                         ) -> AsyncIterator[psycopg.AsyncConnection]:
        """A checked connection from a pool (see ``alive``). A dead one is closed and handed back
        (the pool replaces it) and the next is tried, without the pool's back-off between checks:
        after a restart every idle connection is dead at once, and a request should get a new one
        as soon as the server answers, not a PoolTimeout."""
        deadline = time.monotonic() + (self.settings.api_pool_timeout if timeout is None else timeout)
        while True:
            conn = await pool.getconn(timeout=max(deadline - time.monotonic(), 0.001))
            try:
                usable = await alive(conn)
            except BaseException:  # cancelled: the connection goes back all the same
                await pool.putconn(conn)
                raise
            if usable:
                break
            STALE_CONNECTIONS.labels(pool.name).inc()
            await conn.close()
            await pool.putconn(conn)
        try:
            yield conn
        finally:
            await pool.putconn(conn)

    async def _one(self, pool: AsyncConnectionPool, sql: str, params):
        """One statement, its first column of its one row; retried on serialization failures and
        deadlocks (rolled back whole, so safe to run again) after a short random pause."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self.connection(pool) as conn:
                    try:
                        cur = await conn.execute(sql, params)
                        row = await cur.fetchone()
                        if "reco.api_" in sql and params and isinstance(params[0], str):
                            self.unknown_keys.confirm(params[0])  # the key worked (app.api.keyguard)
                        return row[0]
                    except psycopg.OperationalError as exc:
                        if conn.broken or conn.closed:
                            # the connection died with the statement sent: it may have committed
                            # before its answer was lost (see write)
                            exc.reco_outcome_unknown = True
                        raise
            except RETRIED as exc:
                if attempt == ATTEMPTS:
                    raise
                RETRIES.labels(exc.sqlstate or "").inc()
                await asyncio.sleep(random.uniform(0.005, 0.02) * attempt)
            except psycopg.errors.InvalidAuthorizationSpecification:
                if isinstance(params, tuple | list) and params and isinstance(params[0], str):
                    self.forget(params[0])  # every reco.api_* function takes the key first
                raise

    async def read(self, sql: str, params: tuple) -> str:
        """One statement on the read pool; the first column of its one row."""
        return await self._one(self.reads, sql, params)

    async def write(self, sql: str, params: tuple | dict, what: str):
        """One statement on the write pool; the first column of its one row. Failures are
        ApiErrors: 503 when the database is slow or unreachable, else mapped by SQLSTATE."""
        try:
            return await self._one(self.writes, sql, params)
        except (psycopg.Error, PoolTimeout) as exc:
            if isinstance(exc, psycopg.errors.QueryCanceled):
                raise ApiError(503, "timeout", f"the database took too long: {what} was cancelled",
                               hint="Nothing was stored. Send smaller batches or retry later.") from exc
            if getattr(exc, "reco_outcome_unknown", False):
                raise ApiError(503, "database_unavailable",
                               f"the connection to the database was lost while {what} ran: it may or may not "
                               "have been done",
                               hint="Retry when the database is back (GET /readyz): a retry is safe, events with "
                                    "an event_id are stored once (a retry reports them as duplicates) and "
                                    "upserts store the same values.") from exc
            if unreachable(exc):
                raise unavailable(what) from exc
            raise from_db(exc) from exc

    # --- degraded answers ------------------------------------------------------------------

    def seen(self, key: str) -> None:
        """A key that just worked (the database checked it): learn its tenant (once) for degraded
        answers, and note when it was confirmed."""
        now = time.monotonic()
        self.verified_at[key] = self.used_at[key] = now
        if key not in self.tenants:
            self.tenants[key] = ""  # looked up once
            self._spawn(self._learn(key))

    def forget(self, key: str) -> None:
        """The database refused a key (invalid or revoked): no degraded answers for it either."""
        self.unknown_keys.forget(key)
        self.tenants.pop(key, None)
        self.verified_at.pop(key, None)
        self.used_at.pop(key, None)

    async def _learn(self, key: str) -> None:
        with contextlib.suppress(psycopg.Error, PoolTimeout):
            slug = await self.read("SELECT reco.api_tenant(%s)", (key,))
            if key in self.tenants:  # not forgotten meanwhile
                self.tenants[key] = slug
            if slug not in self.popular:
                await self._refresh(slug, key)

    async def recheck_keys(self) -> None:
        """Keep the key cache honest while the database is up: keys unused for api_key_ttl are
        dropped; keys used within it but not confirmed for api_popular_refresh seconds are checked
        again (a revoked one is forgotten). A revocation thus reaches degraded answers within
        api_popular_refresh seconds, whether or not the key is used."""
        now = time.monotonic()
        ttl, every = self.settings.api_key_ttl, self.settings.api_popular_refresh
        for key in list(self.tenants):
            if now - self.used_at.get(key, 0.0) > ttl:
                self.forget(key)
            elif now - self.verified_at.get(key, 0.0) >= every:
                try:
                    await self.read("SELECT reco.api_tenant(%s)", (key,))
                except psycopg.errors.InvalidAuthorizationSpecification:
                    pass  # forgotten by _one
                except (psycopg.Error, PoolTimeout):
                    return  # the database is away: nothing can be confirmed now
                else:
                    self.verified_at[key] = time.monotonic()

    def trusted(self, key: str) -> bool:
        """A key may get degraded answers: the database confirmed it within api_key_ttl."""
        return time.monotonic() - self.verified_at.get(key, float("-inf")) <= self.settings.api_key_ttl

    async def _refresh(self, slug: str, key: str) -> None:
        """The tenant's popular list, read with one of its keys (reco_api names no tenant itself)."""
        with contextlib.suppress(psycopg.Error, PoolTimeout):
            self.popular[slug] = json.loads(await self.read("SELECT reco.api_popular(%s)", (key,)))

    async def _refresh_loop(self) -> None:
        last = 0.0
        while True:
            now = time.monotonic()
            if now - last >= self.settings.api_popular_refresh:
                last = now
                await self.recheck_keys()
                for slug, key in {s: k for k, s in self.tenants.items() if s}.items():
                    await self._refresh(slug, key)
            for name, pool in (("reads", self.reads), ("writes", self.writes)):
                stats = pool.get_stats()
                POOL.labels(name, "size").set(stats.get("pool_size", 0))
                POOL.labels(name, "available").set(stats.get("pool_available", 0))
                POOL.labels(name, "waiting").set(stats.get("requests_waiting", 0))
            await asyncio.sleep(2.0)

    def degraded(self, route: str, key: str, body: dict, k: int, exclude: str | None = None) -> dict:
        """The last-known popular list for the key's tenant, or 503 when the key was not seen
        working within api_key_ttl (it cannot be checked now, and an unchecked key gets no data)."""
        slug = self.tenants.get(key)
        if not slug or slug not in self.popular or not self.trusted(key):
            raise unavailable("the request", read=True)
        DEGRADED.labels(route).inc()
        ids = [f for f in self.popular[slug] if f != exclude][:k]
        n = len(ids)
        body["items"] = [{"rank": i + 1, "feature_id": f, "score": round((n - i) / n, 4)} for i, f in enumerate(ids)]
        body["variant"] = None
        body["degraded"] = True
        return body

    # --- operations: readiness and job health --------------------------------------------

    async def diagnose(self, exc: BaseException) -> str:
        """A human reason why the database could not be used, for /readyz: a connection of its
        own tells refused, missing socket, authentication... from a pool that is merely busy."""
        place, pool_timeout = where(self.url), self.settings.api_pool_timeout
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return (f"the database at {place} did not answer within the statement timeout "
                    f"({self.settings.api_timeout_ms} ms): it is overloaded or a lock blocks it")
        try:
            conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(self.url, connect_timeout=3), 4)
        except TimeoutError:
            return f"database unreachable at {place}: no answer within 3 s"
        except psycopg.OperationalError as err:
            refused, why = _cause(err)
            return f"database at {place} refused the connection: {why}" if refused else \
                f"database unreachable at {place}: {why}"
        await conn.close()
        if isinstance(exc, PoolTimeout):
            stats = self.reads.get_stats()
            if stats.get("pool_size", 0) >= self.reads.max_size and not stats.get("pool_available", 0):
                return (f"pool timeout after {pool_timeout:g}s: all {self.reads.max_size} connections busy "
                        "(the database is slow or the load too high)")
            return f"pool timeout after {pool_timeout:g}s: the database did not answer in time (reconnecting)"
        return f"database error at {place}: {_cause(exc)[1]}"

    async def job_health(self) -> list[tuple] | None:
        """Per job and tenant (tenants that ran it in the last 30 days): the last success (epoch
        seconds, or None), failed runs in the last 24 hours, whether the last finished run failed.
        Read at scrape time; a few index probes per job and tenant. None when the database is away."""
        try:
            async with self.connection(self.reads) as conn, conn.transaction():
                await conn.execute("SET LOCAL statement_timeout = 2000")
                cur = await conn.execute("SELECT * FROM reco.api_job_health()")
                return await cur.fetchall()
        except (psycopg.Error, PoolTimeout):
            return None

    async def churn_health(self) -> list[tuple] | None:
        """Per tenant with an active churn model: the latest monitoring (reco.api_churn_health, read from the
        model's row at scrape time). None when the database is away or not migrated that far."""
        try:
            async with self.connection(self.reads) as conn, conn.transaction():
                await conn.execute("SET LOCAL statement_timeout = 2000")
                cur = await conn.execute("SELECT * FROM reco.api_churn_health()")
                return await cur.fetchall()
        except (psycopg.Error, PoolTimeout):
            return None


