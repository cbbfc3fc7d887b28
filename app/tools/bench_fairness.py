"""`reco bench fairness`: does one tenant's flood move another tenant's latencies?

A running API server (app.tools.bench.ServerProcess, one worker, the per-key rate limit on) serves two
tenants with the same data. The quiet tenant sends a steady, open-loop load (requests start on a
schedule, whether or not the previous ones have answered, so a slow server shows as latency, not as
fewer requests): recommendations, single-event POSTs, console pages, and the floor (GET /v1/ping: the
key checked in one round trip, no work). The flooding tenant, in every other phase, runs the
issue's flood: streams resending one 10,000-event batch (honouring Retry-After, as the 429 contract
asks), and console pages at a fixed rate. Phases alternate (alone, flood, alone, ...) because the
machine is shared and its speed drifts; the latencies of each kind are pooled per phase type, and
each figure is printed beside the floor measured in the same phases and the ratio flood / alone."""

from __future__ import annotations

import asyncio
import random
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from app.tools import bench

Build = Callable[[int], bytes]


@dataclass
class Kind:
    """One kind of quiet request: its name, how to build the i-th, how many a second."""

    name: str
    build: Build
    rate: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"alone": [], "flood": []})
    statuses: dict[str, Counter] = field(default_factory=lambda: {"alone": Counter(), "flood": Counter()})


@dataclass
class Flood:
    """What the flooding tenant sent and got, in all the flood phases."""

    batches: Counter = field(default_factory=Counter)   # status -> batch POSTs answered so
    console: Counter = field(default_factory=Counter)   # status -> console pages answered so


def get(path: Callable[[int], str], key: str) -> Build:
    head = f"Host: localhost\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    return lambda i: b"GET " + path(i).encode() + b" HTTP/1.1\r\n" + head


def post(path: str, body: Callable[[int], bytes], key: str) -> Build:
    head = (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\n")

    def build(i: int) -> bytes:
        data = body(i)
        return (head + f"Content-Length: {len(data)}\r\n\r\n").encode() + data

    return build


class Client:
    """Keep-alive HTTP/1.1 connections to the server, one request at a time on each (a new one is
    opened when all are busy). Answers are read by Content-Length; a ``Connection: close`` answer
    (a 429 before the body was read) closes its connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def send(self, data: bytes) -> tuple[int, dict[str, str], float]:
        """(status, headers, milliseconds from the send to the last byte of the answer)."""
        start = time.perf_counter()
        conn = self.idle.pop() if self.idle else await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = conn
        try:
            writer.write(data)  # not drained: the answer may come (and the server close) before it is all sent
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0][9:12])
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            await reader.readexactly(int(headers.get("content-length", 0)))
        except (OSError, asyncio.IncompleteReadError):
            writer.close()
            return 0, {}, (time.perf_counter() - start) * 1000
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self.idle.append(conn)
        return status, headers, (time.perf_counter() - start) * 1000

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _steady(client: Client, kind: Kind, phase: str, until: float) -> None:
    """Open loop: the i-th request starts at start + i / rate, whatever the earlier ones are doing."""
    start, i, tasks = time.perf_counter(), 0, set()

    async def one(n: int) -> None:
        status, _, ms = await client.send(kind.build(n))
        kind.statuses[phase][status] += 1
        kind.latencies[phase].append(ms)

    while (at := start + i / kind.rate) < until:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        task = asyncio.ensure_future(one(random.getrandbits(31)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.gather(*tasks)


async def _batches(client: Client, build: Build, until: float, flood: Flood) -> None:
    """Closed loop: resend the batch as soon as it is answered; after a 429, wait its Retry-After."""
    while time.perf_counter() < until:
        status, headers, _ = await client.send(build(0))
        flood.batches[status] += 1
        if status == 429:
            await asyncio.sleep(min(float(headers.get("retry-after", 1)), max(0.0, until - time.perf_counter())))


async def _console_flood(client: Client, build: Build, rate: float, until: float, flood: Flood) -> None:
    start, i, tasks = time.perf_counter(), 0, set()

    async def one(n: int) -> None:
        status, _, _ = await client.send(build(n))
        flood.console[status] += 1

    while (at := start + i / rate) < until:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        task = asyncio.ensure_future(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.gather(*tasks)


async def _quiet(port: int, kinds: list[Kind], name: str, seconds: float) -> None:
    until = time.perf_counter() + seconds
    clients = [Client(port) for _ in kinds]
    try:
        await asyncio.gather(*(_steady(c, k, name, until) for c, k in zip(clients, kinds, strict=True)))
    finally:
        for c in clients:
            c.close()


async def _flood(port: int, seconds: float, batch: Build, streams: int, console: Build, console_rate: float,
                 flood: Flood) -> None:
    until = time.perf_counter() + seconds
    clients = [Client(port) for _ in range(streams + 1)]
    jobs = [_batches(clients[s], batch, until, flood) for s in range(streams)]
    if console_rate > 0:
        jobs.append(_console_flood(clients[-1], console, console_rate, until, flood))
    try:
        await asyncio.gather(*jobs)
    finally:
        for c in clients:
            c.close()


def _flood_process(queue, *args) -> None:
    flood = Flood()
    asyncio.run(_flood(*args, flood))
    queue.put((dict(flood.batches), dict(flood.console)))


def phase(port: int, kinds: list[Kind], name: str, seconds: float, flood: Flood | None = None,
          batch: Build | None = None, streams: int = 0, console: Build | None = None,
          console_rate: float = 0.0) -> None:
    """One phase: the quiet load for ``seconds``; with ``flood``, the flood at the same time from a
    process of its own (so that the sending of megabytes does not delay the quiet requests' clock).
    Returns when every request sent has been answered (a batch in the database included)."""
    import multiprocessing

    process = None
    if flood is not None:
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        process = ctx.Process(target=_flood_process,
                              args=(queue, port, seconds, batch, streams, console, console_rate))
        process.start()
    asyncio.run(_quiet(port, kinds, name, seconds))
    if process is not None:
        batches, pages = queue.get(timeout=600)
        process.join()
        flood.batches.update(batches)
        flood.console.update(pages)


def over_budget(port: int) -> dict[str, int]:
    """reco_tenant_over_budget_total of the server, by budget."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("reco_tenant_over_budget_total{"):
            name = line.split('budget="', 1)[1].split('"', 1)[0]
            out[name] = out.get(name, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


def pct(xs: list[float], q: float) -> float:
    return bench.percentile(xs, q)


def report(kinds: list[Kind], floor: Kind, out: Callable[[str], None]) -> dict[str, tuple[float, float]]:
    """A line per kind: p50 and p99 alone → during the flood, the ratios, beside the floor's. Returns
    {kind: (p50 ratio, p99 ratio)}."""
    ratios = {}
    f = floor.latencies
    out(f"  floor {floor.name}: p50 {pct(f['alone'], .5):.1f} → {pct(f['flood'], .5):.1f} ms, "
        f"p99 {pct(f['alone'], .99):.1f} → {pct(f['flood'], .99):.1f} ms "
        f"(x{pct(f['flood'], .99) / max(pct(f['alone'], .99), 1e-9):.2f})")
    for k in kinds:
        if k is floor:
            continue
        a, b = k.latencies["alone"], k.latencies["flood"]
        r50, r99 = pct(b, .5) / max(pct(a, .5), 1e-9), pct(b, .99) / max(pct(a, .99), 1e-9)
        ratios[k.name] = (r50, r99)
        bad = sum(n for s, n in (k.statuses["alone"] + k.statuses["flood"]).items() if not 200 <= s < 300)
        above = pct(a, .5) / max(pct(f["alone"], .5), 1e-9)
        out(f"  {k.name}: p50 {pct(a, .5):.1f} → {pct(b, .5):.1f} ms (x{r50:.2f}; alone {above:.1f}x the floor), "
            f"p99 {pct(a, .99):.1f} → {pct(b, .99):.1f} ms (x{r99:.2f}); {len(a):,} + {len(b):,} requests, "
            f"{bad} not 2xx")
    return ratios


@dataclass
class Plan:
    """What to measure (the CLI's options)."""

    rounds: int = 3
    seconds: float = 20.0
    streams: int = 6              # flood: streams resending the batch
    console_rate: float = 17.0    # flood: console pages a second
    reads: float = 40.0           # quiet: recommendations a second
    writes: float = 10.0          # quiet: single-event POSTs a second
    pages: float = 1.0            # quiet: console pages a second
    floor: float = 20.0           # quiet: pings a second


def quiet_kinds(plan: Plan, key: str, users: int, run: str) -> list[Kind]:
    """The quiet tenant's load; the floor last."""
    import itertools
    import json
    from datetime import UTC, datetime

    ids = itertools.count()

    def event(i: int) -> bytes:
        return json.dumps({"event_id": f"{run}-q{next(ids)}", "user_id": f"U{i % users + 1}",
                           "feature_id": "background-removal",
                           "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}).encode()

    return [Kind("GET /v1/users/{id}/recommendations?k=10", get(lambda i: f"/v1/users/U{i % users + 1}"
                                                               "/recommendations?k=10", key), plan.reads),
            Kind("POST /v1/events (1 event)", post("/v1/events", event, key), plan.writes),
            Kind("GET /console/user?id={id}", get(lambda i: f"/console/user?id=U{i % users + 1}", key), plan.pages),
            Kind("GET /v1/ping (floor)", get(lambda i: "/v1/ping", key), plan.floor)]


def measure(port: int, plan: Plan, quiet: list[Kind], batch: bytes, flood_key: str, users: int,
            out: Callable[[str], None]) -> tuple[dict[str, tuple[float, float]], Flood, dict[str, int]]:
    """Alternate alone / flood phases on a running server; print a line per phase and the report."""
    run_batch = post("/v1/events", lambda i: batch, flood_key)
    console = get(lambda i: f"/console/user?id=U{i % users + 1}", flood_key)
    flood = Flood()
    budget0 = over_budget(port)
    phase(port, quiet, "alone", 3.0)  # warm-up, not counted
    for k in quiet:
        k.latencies["alone"].clear()
        k.statuses["alone"].clear()
    for r in range(plan.rounds):
        for name in ("alone", "flood"):
            ticks = bench.cpu_ticks()
            before = {k.name: len(k.latencies[name]) for k in quiet}
            phase(port, quiet, name, plan.seconds, flood if name == "flood" else None, run_batch, plan.streams,
                  console, plan.console_rate)
            p99 = ", ".join(f"{k.name.split(' ')[0]} {k.name.split(' ')[1].split('?')[0]} "
                            f"{pct(k.latencies[name][before[k.name]:], .99):.0f}" for k in quiet)
            out(f"round {r + 1} {name:5}: p99 ms {p99}; machine CPU idle {bench.idle_share(ticks):.0%}")
    budgets = {k: v - budget0.get(k, 0) for k, v in over_budget(port).items()}
    ratios = report(quiet, quiet[-1], out)
    return ratios, flood, budgets


#: the budgets, for --no-budgets (every RECO_TENANT_<NAME> set to 0)
BUDGETS = ("events_per_s", "bytes_per_s", "read_statements", "write_statements", "console_per_s",
           "console_statements")


def flood_batch(events_csv, size: int = 10_000, event_bytes: int = 360) -> bytes:
    """The issue's flood batch: ``size`` demo events with fresh ids and recent times, each padded
    with props to about ``event_bytes`` bytes (10,000 events: 3.6 MB)."""
    import json

    (body,) = bench.event_batches(events_csv, 1, size)
    rows = json.loads(body)
    pad = max(0, event_bytes - len(body) // size - 30)
    for row in rows:
        row["props"] = {"source": "bulk-sync", "note": "x" * pad}
    return json.dumps(rows).encode()


def run(port: int, plan: Plan, quiet_key: str, flood_key: str, batch: bytes, users: int, url: str,
        out: Callable[[str], None]) -> None:
    """Measure and print the report: the quiet tenant's figures, the flood's answers and 429s."""
    import psycopg

    def flood_events() -> int:
        with psycopg.connect(url) as conn:
            return conn.execute("SELECT count(*) FROM reco.event_ids WHERE tenant_id = reco.tenant_id('flood')"
                                ).fetchone()[0]

    kinds = quiet_kinds(plan, quiet_key, users, f"fair{int(time.time())}")
    stored0 = flood_events()
    ratios, flood, budgets = measure(port, plan, kinds, batch, flood_key, users, out)
    stored = flood_events() - stored0
    flood_s = plan.rounds * plan.seconds
    out(f"flood, {flood_s:g} s in all: batch POSTs answered {dict(flood.batches)} ({stored:,} events stored, "
        f"{stored / flood_s:,.0f} a second); console pages answered {dict(flood.console)}; "
        f"429s by budget (server): {budgets or 'none'}")
    worst = max(r99 for _, r99 in ratios.values())
    out(f"worst p99 ratio (flood / alone) of the quiet tenant: x{worst:.2f} "
        f"({'within' if worst <= 1.2 else 'ABOVE'} the target x1.20)")
