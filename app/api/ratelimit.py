"""Per-key rate limiting: a token bucket per API key (its SHA-256, as the database knows it),
checked in the API process before the database is called.

Each key may make ``RECO_API_RATE_LIMIT`` requests a second on average, and up to
``RECO_API_RATE_BURST`` at once after a quiet spell; past that it gets 429 in the documented error
shape with ``Retry-After`` (whole seconds, at least 1), counted in ``reco_rate_limited_total{route}``.
A limit of 0 turns it off.

The buckets live in the worker process: with ``reco serve --workers N`` each worker has its own,
so a key may get up to N times the limit in all (the workers share one listening socket and a
client's connections may land on any of them). The check is a dict lookup and a few float
operations on the event loop's one thread: no lock, no await (measured below 1 µs; see
tests/test_rate_limit.py).

The table is bounded: when it holds ``max_keys`` buckets (e.g. a client trying random keys, which
the database refuses afterwards), the buckets that have refilled completely are dropped (a new
bucket starts full: they carry nothing), and if that is not enough, the fuller half of the rest:
the keys being limited keep their buckets."""

from __future__ import annotations

import math
import time

from app.api.errors import ApiError
from app.api.metrics import RATE_LIMITED


class RateLimiter:
    """Token buckets keyed by key hash: ``rate`` tokens a second, at most ``burst``."""

    __slots__ = ("rate", "burst", "max_keys", "buckets", "clock")

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000, clock=time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(max(burst, 1)) if rate > 0 else 0.0
        self.max_keys = max_keys
        #: key hash -> [tokens left, monotonic time of the last update]
        self.buckets: dict[bytes, list[float]] = {}
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def wait(self, key: bytes) -> float:
        """Take a token for ``key``: 0.0 when the request may go on, else the seconds until the
        bucket holds a token again (nothing is taken then)."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_keys:
                self._prune(now)
            self.buckets[key] = [self.burst - 1.0, now]
            return 0.0
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def check(self, key: bytes, route: str) -> None:
        """Raise the 429 when ``key`` is over its limit (counted under ``route``)."""
        wait = self.wait(key)
        if wait:
            RATE_LIMITED.labels(route).inc()
            raise too_many(wait, self.rate, self.burst)

    def _prune(self, now: float) -> None:
        """Make room: drop the buckets that have refilled (a new bucket starts full, so they carry
        nothing), then, if still too many, keep the emptiest half (the keys being limited)."""
        level = {key: tokens + (now - at) * self.rate for key, (tokens, at) in self.buckets.items()}
        for key, tokens in level.items():
            if tokens >= self.burst:
                del self.buckets[key]
        if len(self.buckets) > self.max_keys // 2:
            keep = sorted(self.buckets, key=level.__getitem__)[:self.max_keys // 2]
            self.buckets = {key: self.buckets[key] for key in keep}


def retry_after(wait: float) -> int:
    """Whole seconds for Retry-After: rounded up, at least 1."""
    return max(1, math.ceil(wait))


def too_many(wait: float, rate: float, burst: float) -> ApiError:
    seconds = retry_after(wait)
    return ApiError(429, "rate_limited",
                    f"too many requests for this API key: the limit is {rate:g} a second (bursts of {burst:g})",
                    hint=f"Retry after {seconds} s (the Retry-After header); the limit is RECO_API_RATE_LIMIT and "
                         "RECO_API_RATE_BURST, per API worker process.",
                    headers={"Retry-After": str(seconds)})
