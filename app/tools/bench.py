"""Benchmarks that print numbers (``reco bench ...``); never run by the test suite.

They work in a database of their own, ``<database>_bench`` on the same server, dropped and
re-created at the start, so they never touch the data of the real database.
"""

from __future__ import annotations

import csv
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from app.db import with_dbname
from app.migrate import migrate


def bench_name(url: str, suffix: str = "bench") -> str:
    return f"{psycopg.conninfo.conninfo_to_dict(url).get('dbname') or 'reco'}_{suffix}"


def bench_database(url: str, suffix: str = "bench", *, reuse: bool = False) -> str:
    """``<db>_<suffix>`` next to the database of ``url``, dropped and created (kept when ``reuse``
    and it exists), migrated; returns its URL."""
    name = bench_name(url, suffix)
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not (reuse and exists):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    bench_url = with_dbname(url, name)
    migrate(bench_url)
    return bench_url


@dataclass
class BatchStats:
    events: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(q * len(xs)))]


def read_events(path: Path, limit: int, prefix: str) -> list[dict]:
    """The first ``limit`` events of a CSV file, with fresh event ids (``prefix`` + old id)."""
    out: list[dict] = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            row["event_id"] = prefix + row["event_id"]
            out.append({k: v for k, v in row.items() if v != ""})
            if len(out) >= limit:
                break
    return out


def ingest_batches(url: str, events: list[dict], batch_size: int = 1000) -> BatchStats:
    latencies: list[float] = []
    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        for i in range(0, len(events), batch_size):
            batch = events[i:i + batch_size]
            t = time.perf_counter()
            report = conn.execute("SELECT reco.ingest_events(%s)", (Jsonb(batch),)).fetchone()[0]
            latencies.append((time.perf_counter() - t) * 1000)
            if report["rejected"]:
                raise RuntimeError(f"benchmark batch rejected rows: {report['rejected'][:3]}")
        seconds = time.perf_counter() - t0
    return BatchStats(len(events), seconds, latencies)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


# Times each call inside the database, so the numbers exclude the client and the network. The
# floor is the same loop around a trivial SQL function with the same arguments (a function call,
# a row): what a call costs before recommend_features does any work. Every absolute figure is
# printed beside a floor measured in the same run.
TIME_RECOMMEND = """
CREATE OR REPLACE FUNCTION pg_temp.floor_call(p_user_id text, p_k int, p_options jsonb, p_tenant text)
RETURNS TABLE (rank int) LANGUAGE sql VOLATILE AS $$ SELECT 1 $$;
-- one loop for both, so the floor pays exactly the loop's own overhead (the branch included)
CREATE OR REPLACE FUNCTION pg_temp.time_calls(p_users text[], p_k int, p_options jsonb, p_tenant text,
                                              p_floor boolean)
RETURNS float8[]
LANGUAGE plpgsql AS $$
DECLARE
    _u text;
    _t timestamptz;
    _ms float8[] := '{}';
BEGIN
    FOREACH _u IN ARRAY p_users LOOP
        _t := clock_timestamp();
        IF p_floor THEN
            PERFORM * FROM pg_temp.floor_call(_u, p_k, p_options, p_tenant);
        ELSE
            PERFORM * FROM reco.recommend_features(_u, p_k, p_options, p_tenant);
        END IF;
        _ms := _ms || extract(epoch FROM clock_timestamp() - _t)::float8 * 1000;
    END LOOP;
    RETURN _ms;
END $$;
"""


@dataclass
class Timed:
    """In-database latencies (ms) of recommend_features and of the floor, from the same run."""

    ms: list[float]
    floor_ms: list[float]

    def as_json(self) -> dict:
        return {"calls": len(self.ms), "p50_ms": round(percentile(self.ms, 0.5), 3),
                "p99_ms": round(percentile(self.ms, 0.99), 3), "max_ms": round(max(self.ms), 3),
                "floor_p50_ms": round(percentile(self.floor_ms, 0.5), 4),
                "floor_p99_ms": round(percentile(self.floor_ms, 0.99), 4)}

    def line(self) -> str:
        p50, p99 = percentile(self.ms, 0.5), percentile(self.ms, 0.99)
        f50, f99 = percentile(self.floor_ms, 0.5), percentile(self.floor_ms, 0.99)
        return (f"p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {max(self.ms):.1f} ms; "
                f"floor (the same loop calling SELECT 1 in a function) p50 {f50:.4f} ms, p99 {f99:.4f} ms; "
                f"recommend / floor: p50 {p50 / max(f50, 1e-9):.0f}x, p99 {p99 / max(f99, 1e-9):.0f}x")


def _timing_users(conn, n_calls: int, tenant: str | None, seed: float,
                  among: list[str] | None = None) -> list[str]:
    """n_calls users in random order: the tenant's users with interactions (or ``among``), each
    at most once when there are enough of them, else drawn with replacement."""
    import random

    if among is None:
        conn.execute("SELECT setseed(%s)", (seed,))
        among = [r[0] for r in conn.execute(
            """SELECT u.user_id FROM reco.users u
               WHERE u.tenant_id = reco.tenant_id(%s)
                 AND EXISTS (SELECT 1 FROM reco.interactions i
                             WHERE i.tenant_id = u.tenant_id AND i.user_key = u.user_key)
               ORDER BY random() LIMIT %s""", (tenant, n_calls))]
    rnd = random.Random(seed)
    if not among:
        return []
    if len(among) >= n_calls:
        return rnd.sample(among, n_calls)
    return [rnd.choice(among) for _ in range(n_calls)]


def time_recommend_floor(url: str, n_calls: int, k: int = 10, seed: float = 0.42,
                         options: dict | None = None, tenant: str | None = None,
                         users: list[str] | None = None, rounds: int = 5) -> Timed:
    """recommend_features(u, k, options, tenant) for n_calls random users (of ``users``, else of
    the tenant's users with interactions), each call timed in SQL, and the floor in the same
    session, alternated in ``rounds`` slices (the machine's speed drifts)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(TIME_RECOMMEND)
        calls = _timing_users(conn, n_calls, tenant, seed, users)
        args = (Jsonb(options or {}), tenant)
        conn.execute("SELECT pg_temp.time_calls(%s, %s, %s, %s, false)", (calls[:200], k, *args))  # warm
        conn.execute("SELECT pg_temp.time_calls(%s, %s, %s, %s, true)", (calls[:200], k, *args))
        ms: list[float] = []
        floor: list[float] = []
        step = max(1, -(-len(calls) // rounds))
        for i in range(0, len(calls), step):
            part = calls[i:i + step]
            ms += conn.execute("SELECT pg_temp.time_calls(%s, %s, %s, %s, false)", (part, k, *args)).fetchone()[0]
            floor += conn.execute("SELECT pg_temp.time_calls(%s, %s, %s, %s, true)", (part, k, *args)).fetchone()[0]
        return Timed(ms, floor)


def time_recommend(url: str, n_users: int, k: int = 10, seed: float = 0.42,
                   options: dict | None = None, tenant: str | None = None) -> list[float]:
    """Latencies (ms) of recommend_features for n random users with interactions of ``tenant``
    (default tenant when None), measured in SQL."""
    return time_recommend_floor(url, n_users, k, seed, options, tenant, rounds=1).ms


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


# --------------------------------------------------------------------------------------------
# reco bench api: a running server, measured from another process
# --------------------------------------------------------------------------------------------

def _cpu_seconds(pid: str) -> float:
    import os

    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu(match: str) -> float:
    """CPU seconds used so far by the processes whose command line contains ``match`` (Linux)."""
    import os

    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="ignore")
        except OSError:
            continue
        if match in cmd:
            total += _cpu_seconds(pid)
    return total


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and its descendants (Linux): the API server and the
    worker processes it starts."""
    total, todo = 0.0, [str(pid)]
    while todo:
        p = todo.pop()
        total += _cpu_seconds(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo.extend(fh.read().split())
        except OSError:
            pass
    return total


def own_cpu() -> float:
    """CPU seconds used so far by this process (the load generator of `reco bench api`)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_ticks() -> tuple[int, int]:
    """The machine's CPU time so far (Linux /proc/stat, in ticks): (idle, total)."""
    with open("/proc/stat") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:9]]
    return ticks[3], sum(ticks)


def idle_share(since: tuple[int, int]) -> float:
    """The share of the machine's CPU time idle since the ``cpu_ticks()`` reading ``since``."""
    idle, total = cpu_ticks()
    return (idle - since[0]) / max(total - since[1], 1)


def degraded_answers(port: int) -> int:
    """reco_degraded_responses_total of a running API server, all routes and workers."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("reco_degraded_responses_total{")))


@dataclass
class ServerProcess:
    """`reco serve` in a subprocess, against ``url``, with the per-key rate limit off (a benchmark
    sends thousands of requests a second with one key). Its log (one line per request at the
    default level) goes to ``log``, a temporary file by default: a pipe nobody reads would fill up
    and block the server."""

    url: str
    port: int
    workers: int
    log: Path | None = None
    env: dict | None = None
    process: object = None

    def __enter__(self) -> ServerProcess:
        import os
        import subprocess
        import sys
        import tempfile
        import urllib.request

        env = {**os.environ, "RECO_DATABASE_URL": self.url, "RECO_API_RATE_LIMIT": "0", **(self.env or {})}
        env.pop("RECO_API_DATABASE_URL", None)  # the API's URL is derived from the benchmark's database
        self._log = self.log.open("wb") if self.log else tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port), "--workers", str(self.workers)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._log.flush()
                self._log.seek(0)
                text = self._log.read().decode(errors="replace") if not self.log else self.log.read_text()
                self.__exit__()
                raise RuntimeError(f"the API server did not start: {text[-2000:]}")
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        import subprocess

        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def event_batches(path: Path, batches: int, size: int) -> list[bytes]:
    """``batches`` JSON bodies of ``size`` events from a demo events file, with fresh ids and
    recent times (so they are new events, not duplicates, and pass the future-time check)."""
    import json
    from datetime import UTC, datetime, timedelta

    events = read_events(path, batches * size, prefix=f"api{int(time.time())}:")
    now = datetime.now(UTC)
    out = []
    for i in range(batches):
        chunk = events[i * size:(i + 1) * size]
        for j, e in enumerate(chunk):
            e["occurred_at"] = (now - timedelta(seconds=j)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(json.dumps(chunk).encode())
    return out
