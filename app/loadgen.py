"""A small HTTP/1.1 load generator for `reco bench api`: keep-alive connections on asyncio (uvloop),
each sending its next request when the previous answer is complete (closed loop), so that the
measuring costs little CPU next to the server on the same machine."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    errors: int
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


Request = Callable[[random.Random], bytes]


def get(path: Callable[[random.Random], str], key: str, host: str = "localhost") -> Request:
    head = f"Host: {host}\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    return lambda rnd: b"GET " + path(rnd).encode() + b" HTTP/1.1\r\n" + head


def post(path: str, body: Callable[[random.Random], bytes], key: str, host: str = "localhost") -> Request:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"

    def build(rnd: random.Random) -> bytes:
        data = body(rnd)
        return (head + f"Content-Length: {len(data)}\r\n\r\n").encode() + data

    return build


async def _worker(host: str, port: int, request: Request, deadline: float, seed: int, result: LoadResult,
                  limit: int | None) -> None:
    rnd = random.Random(seed)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline and (limit is None or result.requests < limit):
            data = request(rnd)
            t = time.perf_counter()
            writer.write(data)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            result.latencies_ms.append((time.perf_counter() - t) * 1000)
            status = int(status_line.split(b" ", 2)[1]) if status_line else 0
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.requests += 1
            if not 200 <= status < 300:
                result.errors += 1
    finally:
        writer.close()


async def _run(host: str, port: int, request: Request, connections: int, seconds: float,
               limit: int | None) -> LoadResult:
    result = LoadResult(0, 0.0, [], 0, {})
    start = time.perf_counter()
    await asyncio.gather(*(_worker(host, port, request, start + seconds, i, result, limit)
                           for i in range(connections)))
    result.seconds = time.perf_counter() - start
    return result


def run(host: str, port: int, request: Request, *, connections: int, seconds: float,
        limit: int | None = None) -> LoadResult:
    """``connections`` closed-loop clients for ``seconds`` (or until ``limit`` requests)."""
    try:
        import uvloop

        return uvloop.run(_run(host, port, request, connections, seconds, limit))
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(_run(host, port, request, connections, seconds, limit))
