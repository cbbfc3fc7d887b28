"""What checking the key in the database costs: ``python -m app.tools.bench_keys [URL]`` (default: the
configured database). The API passes the key and the database hashes it (reco._api_key); this
prints, per call, the SHA-256 of a key, the whole key check (reco.api_tenant: the hash, the index
probe, the plpgsql call) and beside each the floor measured in the same run (the same statement
without the hash, without the call), and the ratio. Server-side times (EXPLAIN ANALYZE, no
round trip), the median of alternating rounds. It creates one key in a transaction it rolls back."""

from __future__ import annotations

import statistics
import sys

import psycopg

CALLS = 20_000
ROUNDS = 7

#: (what, the measured statement, its floor); %(key)s is a real key, %(n)s the calls
CASES = [
    ("sha256 of a key", "SELECT count(sha256(convert_to(%(key)s || g::text, 'UTF8'))) FROM generate_series(1, %(n)s) g",
     "SELECT count(convert_to(%(key)s || g::text, 'UTF8')) FROM generate_series(1, %(n)s) g"),
    ("key check (reco.api_tenant)", "SELECT count(reco.api_tenant(%(key)s || left(g::text, 0))) "
     "FROM generate_series(1, %(n)s) g",
     "SELECT count(%(key)s || left(g::text, 0)) FROM generate_series(1, %(n)s) g"),
]


def _ms(conn: psycopg.Connection, sql: str, params: dict) -> float:
    plan = conn.execute(f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}", params).fetchone()[0]
    return float(plan[0]["Execution Time"])


def measure(url: str) -> list[tuple[str, float, float]]:
    """(what, µs per call, floor µs per call) for each case."""
    out = []
    with psycopg.connect(url) as conn:
        key = conn.execute("SELECT reco.create_api_key(NULL, 'bench_keys')").fetchone()[0]
        params = {"key": key, "n": CALLS}
        for what, sql, floor in CASES:
            times, floors = [], []
            for _ in range(ROUNDS):  # alternated: the machine's load hits both alike
                times.append(_ms(conn, sql, params))
                floors.append(_ms(conn, floor, params))
            out.append((what, statistics.median(times) * 1000 / CALLS, statistics.median(floors) * 1000 / CALLS))
        conn.rollback()
    return out


def main() -> None:
    if len(sys.argv) > 1:
        url = sys.argv[1]
    else:
        from app import db
        url = db.database_url()
    for what, us, floor in measure(url):
        print(f"{what:30} {us:7.2f} µs/call   floor {floor:6.2f} µs/call   ratio {us / floor:5.1f}   "
              f"(+{us - floor:.2f} µs)")


if __name__ == "__main__":
    main()
