"""Dependencies of the handlers (as ``Annotated`` aliases): the API state and the caller's key,
checked against the key's rate limit (app.api.ratelimit) before any database call. The hot read
handlers take the bare request and call ``checked_key`` themselves.

The key itself goes to the database, which hashes it (reco._api_key): what the database stores,
the key's SHA-256, is no key (docs/security.md). The rate limiter counts per SHA-256 of the key."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, Header, Request

from app.api.errors import ApiError
from app.api.keyguard import check_unknown_key
from app.api.state import ApiState


def get_state(request: Request) -> ApiState:
    return request.app.state.reco


def bearer_key(request: Request, authorization: Annotated[str | None, Header(
        description="Bearer <key> (`reco keys create --tenant T` prints one)")] = None) -> str:
    """The bearer key, for the database to check (it hashes it: keys are stored hashed). A key
    over its rate limit gets 429 here, before the handler runs."""
    key = key_of(authorization)
    limit(request, key)
    return key


def checked_key(request: Request) -> str:
    """``bearer_key`` for the handlers that take the bare request (app.api.serving)."""
    key = key_of(request.headers.get("authorization"))
    limit(request, key)
    return key


def limit(request: Request, key: str) -> None:
    """429 (ApiError) when the key is over its rate limit; counted under the route template."""
    check_unknown_key(request, key)  # app.api.keyguard: random keys from one address cost no database trips
    limiter = request.app.state.reco.limiter
    if limiter.rate > 0:
        limiter.check(hashlib.sha256(key.encode()).digest(),
                      getattr(request.scope.get("route"), "path", None) or "unmatched")


def key_of(authorization: str | None) -> str:
    """The key of an ``Authorization: Bearer <key>`` header; 401 without one."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "missing API key",
                       hint="Send Authorization: Bearer <key>; create a key with `reco keys create`.",
                       headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


State = Annotated[ApiState, Depends(get_state)]
Key = Annotated[str, Depends(bearer_key)]
