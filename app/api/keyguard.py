"""Unknown keys per client address: a client that sends keys the database has not confirmed (typos, a
new key, or someone trying random keys) may try ``RECO_API_UNKNOWN_KEY_RATE`` a second on average and
``RECO_API_UNKNOWN_KEY_BURST`` at once; past that it gets 429 before the database is asked. A key the
database accepted once (any request that worked) is confirmed and never counts again, so a working
client is not slowed; a key the database refuses is forgotten. The buckets are app.api.ratelimit's,
keyed by the client's address, in the worker process."""

from __future__ import annotations

from fastapi import Request

from app.api.errors import ApiError
from app.api.metrics import RATE_LIMITED
from app.api.ratelimit import RateLimiter, retry_after

MAX_CONFIRMED = 100_000  # keys remembered per worker (cleared when full: each is confirmed again once)


class UnknownKeys:
    __slots__ = ("limiter", "confirmed")

    def __init__(self, rate: float, burst: int) -> None:
        self.limiter = RateLimiter(rate, burst)
        self.confirmed: set[str] = set()

    def check(self, address: str, key: str) -> None:
        """429 (ApiError) when ``key`` is not confirmed and ``address`` has used up its tries."""
        if not self.limiter.enabled or key in self.confirmed:
            return
        wait = self.limiter.wait(address.encode())
        if wait:
            RATE_LIMITED.labels("unknown_key").inc()
            seconds = retry_after(wait)
            raise ApiError(429, "rate_limited", "too many unknown API keys from this address",
                           hint=f"Retry after {seconds} s with a valid key (`reco keys create` makes one); the "
                                "limit is RECO_API_UNKNOWN_KEY_RATE and RECO_API_UNKNOWN_KEY_BURST.",
                           headers={"Retry-After": str(seconds)})

    def confirm(self, key: str) -> None:
        """The database accepted this key (a reco.api_* call, which takes the key first, answered)."""
        if key not in self.confirmed:
            if len(self.confirmed) >= MAX_CONFIRMED:
                self.confirmed.clear()
            self.confirmed.add(key)

    def forget(self, key: str) -> None:
        self.confirmed.discard(key)


def check_unknown_key(request: Request, key: str) -> None:
    request.app.state.reco.unknown_keys.check(request.client.host if request.client else "", key)
