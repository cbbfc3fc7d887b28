"""A batch of events read, checked and made ready for the database — off the event loop when it is
large.

The API process has one event loop: a 10,000-event body (megabytes of JSON) parsed, checked row by
row (app.api.limits) and serialized again on it held up every other request, of every tenant, for
the hundreds of milliseconds that takes (`reco bench fairness` measured a quiet tenant's p99 going
from ~90 ms to ~1.2 s). Bodies up to ``INLINE_BYTES`` are prepared on the loop as before (a few
hundred microseconds); larger ones in a worker process of this API process (one, started on first
use, at a lower CPU priority: the parsing of big batches is bounded to one core whoever sends them,
and yields to the rest on a busy machine), while the loop serves the others. The same function runs
in both places, so the answers are the same whatever the size.

The result is the JSON text the database reads (the good rows, compact), where each of them was in
the request, and the rows refused with their reasons; or the 422 fields when the body as a whole is
not a batch of events."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from app.api.limits import MAX_BATCH, event_problem, event_row

#: bodies larger than this are prepared in the worker process
INLINE_BYTES = 64 * 1024

#: how much lower the worker process's CPU priority is than the API's (os.nice)
NICE = 10

_pool: ProcessPoolExecutor | None = None


@dataclass(frozen=True)
class Prepared:
    """A batch ready for reco.api_ingest_events: ``payload`` (JSON text of the good rows), ``where``
    (the index in the request of each), ``rejected`` ({index, field, reason} of the others)."""

    payload: str
    where: list[int]
    rejected: list[dict[str, Any]]
    pid: int  # the process that prepared it (the API's own for a small body)


def prepare_events(raw: bytes) -> Prepared | list[dict[str, str]]:
    """The body of POST /v1/events ready for the database, or the 422 fields (body: reason) when it
    is not JSON, not an event or a list of them, or too long a list. Runs anywhere (no state)."""
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        return [{"field": "body", "reason": f"not valid JSON: {exc.msg} (at character {exc.pos})"}]
    except RecursionError:
        return [{"field": "body", "reason": "JSON nested too deeply"}]
    except UnicodeDecodeError:
        return [{"field": "body", "reason": "not valid JSON: not UTF-8 text"}]
    if not isinstance(body, dict | list):
        return [{"field": "body", "reason": "an event (a JSON object) or a list of events"}]
    rows = [body] if isinstance(body, dict) else body
    if len(rows) > MAX_BATCH:
        return [{"field": "body", "reason": f"at most {MAX_BATCH:,} events per request, got {len(rows):,}"}]
    good, where, rejected = [], [], []
    for i, row in enumerate(rows):
        problem = event_problem(row)
        if problem:
            rejected.append({"index": i, "field": problem[0], "reason": problem[1]})
        else:
            good.append(event_row(row))
            where.append(i)
    return Prepared(json.dumps(good, separators=(",", ":")), where, rejected, os.getpid())


async def prepare(raw: bytes) -> Prepared | list[dict[str, str]]:
    """``prepare_events`` on the loop for a small body, in the worker process for a large one."""
    if len(raw) <= INLINE_BYTES:
        return prepare_events(raw)
    global _pool
    try:
        return await asyncio.get_running_loop().run_in_executor(start(), prepare_events, raw)
    except BrokenProcessPool:  # the worker died (killed?): a new one next time, this body here
        _pool = None
        return prepare_events(raw)


def start() -> ProcessPoolExecutor:
    """The worker process, started: the API's lifespan starts it, so that the first large batch waits
    neither for a Python to start on a busy machine nor, with the loop, for its launch."""
    global _pool
    if _pool is None:
        # spawn: a fresh interpreter, not a fork of a process with an event loop and open sockets;
        # at a lower CPU priority (nice 10): on a busy machine, the requests of the loop come first
        _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_init_worker, initargs=(NICE, os.getpid()))
        _pool.submit(prepare_events, b"[]")  # launches the process now
    return _pool


def _init_worker(nice: int, parent: int) -> None:
    """In the worker process: a lower CPU priority, and an end when the API process is gone (killed,
    or stopped without shutting the pool down: the worker would otherwise outlive it)."""
    import threading
    import time

    os.nice(nice)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="pgreco-parent-watch").start()


def shutdown() -> None:
    """Stop the worker process. One serves every app of the process for its life (tests create
    many); the interpreter stops it at exit."""
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None
