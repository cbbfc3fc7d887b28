"""`reco bench soak`: mixed load on the REST API for N minutes while the database is stopped and
started (pg_ctl -m fast), restarted, and crashed (pg_ctl -m immediate), then the figures:

- events the API accepted (the 2xx answers' "accepted" counts) against events stored (counted in
  the database, by event id): an accepted event must never be lost;
- write answers that claimed nothing was stored (503 "Nothing was stored") for events that are in
  fact stored; a 503 saying the outcome is unknown (the connection died mid-statement) is counted
  apart, with how many of its events were stored;
- 5xx answers: reads must answer 200 (degraded: the last-known popular list) while the database
  is away, never 5xx; writes may answer 503;
- after each restart, the time from the database being back to the first read that is not
  degraded (full recovery), and to the last read that still was.

Everything runs on an embedded server of its own, in a temporary directory (never the shared
servers of .reco/), with durable settings (fsync on: a crash must not lose a commit): a fresh
database with a small demo world, `reco serve` in a subprocess (one worker, the default sizing),
and an asyncio load generator in this process: readers GET recommendations at a paced rate,
writers POST batches of events with unique event ids (no retries: each batch is counted once).
The database is controlled from a thread, so the load goes on while pg_ctl runs.

What happened (each answer, each outage) and the figures made of it: app/tools/soak_figures.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from app.tools.bench import ServerProcess
from app.tools.soak_figures import Answer, Figures, Outage, Soak, figures, report, stored_ids

# --------------------------------------------------------------------------------------------
# the load: a small keep-alive HTTP/1.1 client on asyncio streams
# --------------------------------------------------------------------------------------------

class Client:
    """One keep-alive connection; reconnects after the server closes it."""

    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.key}\r\n"
                + (f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n" if body is not None else "")
                + "\r\n").encode()
        for attempt in (1, 2):
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
                self.writer.write(head + (body or b""))
                await self.writer.drain()
                return await asyncio.wait_for(self._answer(), 60)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                self.close()
                if attempt == 2 or body is not None:
                    return 0, b""  # a write is never sent twice (it might have been stored)
        return 0, b""

    async def _answer(self) -> tuple[int, bytes]:
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        length, close = 0, False
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        body = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def reader_loop(soak: Soak, port: int, key: str, users: int, rate: float, until: float, seed: int) -> None:
    client, rnd = Client(port, key), random.Random(seed)
    next_at = time.monotonic()
    while (now := time.monotonic()) < until:
        if next_at > now:
            await asyncio.sleep(next_at - now)
        next_at += rnd.expovariate(rate)
        sent = time.monotonic()
        status, body = await client.request("GET", f"/v1/users/U{rnd.randint(1, users)}/recommendations?k=10")
        degraded = False
        if status == 200:
            try:
                degraded = bool(json.loads(body).get("degraded"))
            except ValueError:
                soak.errors.append(f"read answered 200 with a body that is not JSON: {body[:200]!r}")
        soak.answers.append(Answer("read", sent, time.monotonic(), status, degraded))
    client.close()


async def writer_loop(soak: Soak, port: int, key: str, users: int, features: list[str], rate: float, size: int,
                      until: float, seed: int, run: str) -> None:
    client, rnd = Client(port, key), random.Random(seed)
    next_at = time.monotonic()
    n = 0
    while (now := time.monotonic()) < until:
        if next_at > now:
            await asyncio.sleep(next_at - now)
        next_at += rnd.expovariate(rate)
        when = (datetime.now(UTC) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        ids = [f"{run}-{seed}-{n}-{i}" for i in range(size)]
        n += 1
        events = [{"event_id": e, "user_id": f"U{rnd.randint(1, users)}", "feature_id": rnd.choice(features),
                   "occurred_at": when} for e in ids]
        soak.batches.append(ids)
        index = len(soak.batches) - 1
        sent = time.monotonic()
        status, body = await client.request("POST", "/v1/events", json.dumps(events).encode())
        accepted, nothing = 0, False
        if 200 <= status < 300:
            report = json.loads(body)
            accepted = report["accepted"]
            if report["rejected"]:
                soak.errors.append(f"a batch had rejected rows: {report['rejected'][:2]}")
        elif status == 503:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                nothing = "nothing was stored" in (json.loads(body)["error"].get("hint") or "").lower()
        soak.answers.append(Answer("write", sent, time.monotonic(), status, accepted=accepted, batch=index,
                                   nothing_stored=nothing))
    client.close()


# --------------------------------------------------------------------------------------------
# the database: an embedded server of its own
# --------------------------------------------------------------------------------------------

FEATURES = [f"f{i:02d}" for i in range(24)]


def seed_world(url: str, users: int, seed: int = 7) -> str:
    """Features, users with a month of events, plans, the jobs run; returns an API key."""
    rnd = random.Random(seed)
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT reco.upsert_features(%s)", (Jsonb(
            [{"feature_id": f, "category": f"c{i % 5}"} for i, f in enumerate(FEATURES)]),))
        conn.execute("SELECT reco.upsert_plans(%s)", (Jsonb(
            [{"plan_id": "free", "price": 0, "quota": 100}, {"plan_id": "pro", "price": 20}]),))
        events = []
        for u in range(1, users + 1):
            liked = rnd.sample(FEATURES, 6)
            for _ in range(rnd.randint(3, 15)):
                events.append({"user_id": f"U{u}", "feature_id": rnd.choice(liked),
                               "occurred_at": (now - timedelta(days=rnd.uniform(1, 28))).isoformat()})
        for i in range(0, len(events), 5000):
            conn.execute("SELECT reco.ingest_events(%s)", (Jsonb(events[i:i + 5000]),))
        conn.execute("CALL reco.run_job('all')")
        return conn.execute("SELECT reco.create_api_key('default', 'soak')").fetchone()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_stop(server, mode: str) -> None:
    """pg_ctl stop -m MODE on the soak's own server (as its OS user when run as root: the server's
    own way of running its binaries, EmbeddedServer._run; its stop() knows only -m fast)."""
    server._run("pg_ctl", "-D", str(server.pgdata), "-w", "-t", "60", "-m", mode, "stop")


async def chaos(soak: Soak, server, plan: list[tuple[float, str, float]], start: float) -> None:
    """At each (seconds after start, kind, seconds down): stop the server (fast, or immediate for
    a crash), wait, start it again; pg_ctl runs in a thread so the load goes on."""
    for at, kind, down in plan:
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        outage = Outage(kind, time.monotonic())
        soak.outages.append(outage)
        await asyncio.to_thread(pg_stop, server, "immediate" if kind == "crash" else "fast")
        outage.stopped_at = time.monotonic()
        await asyncio.sleep(down)
        await asyncio.to_thread(server.start)
        outage.back_at = time.monotonic()


def schedule(seconds: float, down: float) -> list[tuple[float, str, float]]:
    """Stop/start at a quarter of the run, a restart at half, a crash at three quarters."""
    return [(seconds * 0.25, "stop/start", down), (seconds * 0.5, "restart", 0.0),
            (seconds * 0.75, "crash", down)]


async def run_load(soak: Soak, server, port: int, key: str, *, seconds: float, users: int, readers: int,
                   read_rate: float, writers: int, write_rate: float, batch: int, down: float, run: str) -> None:
    start = time.monotonic()
    until = start + seconds
    tasks = [reader_loop(soak, port, key, users, read_rate / readers, until, i) for i in range(readers)]
    tasks += [writer_loop(soak, port, key, users, FEATURES, write_rate / writers, batch, until, 1000 + i, run)
              for i in range(writers)]
    tasks.append(chaos(soak, server, schedule(seconds, down), start))
    await asyncio.gather(*tasks)


def soak(minutes: float = 10.0, *, users: int = 2000, readers: int = 4, read_rate: float = 200.0,
         writers: int = 2, write_rate: float = 10.0, batch: int = 100, down: float = 5.0, port: int = 0,
         keep: bool = False, out: Callable[[str], None] = print) -> Figures:
    """The whole soak; returns the figures (and prints them with ``out``)."""
    from app.embedded import EmbeddedServer
    from app.migrate import migrate

    seconds = minutes * 60
    root = Path(tempfile.mkdtemp(prefix="reco-soak-"))
    server = EmbeddedServer(root)  # durable (fsync on): a crash must not lose a commit
    run = f"soak{int(time.time())}"
    try:
        out(f"soak: embedded server in {root} (its own, durable); seeding {users:,} users ...")
        server.start()
        server.ensure_database("reco")
        url = server.url("reco")
        migrate(url)
        key = seed_world(url, users)
        port = port or free_port()
        out(f"soak: reco serve on port {port}; load for {minutes:g} min: {readers} readers at {read_rate:g} req/s "
            f"in all, {writers} writers at {write_rate:g} batches/s of {batch} events; the database stopped and "
            f"started, restarted, crashed at 1/4, 1/2, 3/4 ({down:g} s down)")
        state = Soak()
        with ServerProcess(url, port, 1, log=root / "api.log", env={"RECO_LOG_LEVEL": "warning"}):
            asyncio.run(run_load(state, server, port, key, seconds=seconds, users=users, readers=readers,
                                 read_rate=read_rate, writers=writers, write_rate=write_rate, batch=batch,
                                 down=down, run=run))
        f = figures(state, stored_ids(url, run), seconds)
        report(f, out)
        return f
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        if keep:
            out(f"soak: kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def soak_command(minutes: float = 10.0, **options) -> None:
    """`reco bench soak`: run it, print the figures; exit status 1 when a target is missed."""
    f = soak(minutes, **options)
    if not f.ok():
        raise SystemExit(1)
