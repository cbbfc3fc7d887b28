"""A small HTTP/1.1 load generator for `reco bench api`: keep-alive connections on asyncio (uvloop)
protocols, each sending its next request when the previous answer is complete (closed loop), so
that the measuring costs little CPU next to the server on the same machine (about 0.03 ms per
request). It reads answers with a Content-Length, which is what the API sends."""

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


class _Client(asyncio.Protocol):
    """One keep-alive connection: sends a request, parses the answer out of one buffer when it is
    complete (status line, Content-Length, body), records it and sends the next."""

    def __init__(self, request: Request, deadline: float, seed: int, result: LoadResult,
                 limit: int | None, done: asyncio.Future) -> None:
        self.request, self.deadline, self.result, self.limit, self.done = request, deadline, result, limit, done
        self.rnd = random.Random(seed)
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.sent = 0.0
        self.closing = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        r = self.result
        if time.perf_counter() >= self.deadline or (self.limit is not None and r.requests >= self.limit):
            self.closing = True
            self.transport.close()
            return
        data = self.request(self.rnd)
        self.sent = time.perf_counter()
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self.buf = buf
            return
        head = buf[:end].lower()
        length, at = 0, head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17:stop if stop > 0 else None])
        if len(buf) < end + 4 + length:
            self.buf = buf
            return
        self.buf = buf[end + 4 + length:]
        r = self.result
        r.latencies_ms.append((time.perf_counter() - self.sent) * 1000)
        status = int(head[9:12])
        r.statuses[status] = r.statuses.get(status, 0) + 1
        r.requests += 1
        if not 200 <= status < 300:
            r.errors += 1
        self._send()

    def connection_lost(self, exc) -> None:
        if not self.closing:  # the server closed it (or it broke) mid-request: an error, status 0
            self.result.errors += 1
            self.result.statuses[0] = self.result.statuses.get(0, 0) + 1
        if not self.done.done():
            self.done.set_result(None)


async def _worker(host: str, port: int, request: Request, deadline: float, seed: int, result: LoadResult,
                  limit: int | None) -> None:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    await loop.create_connection(lambda: _Client(request, deadline, seed, result, limit, done), host, port)
    await done


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
