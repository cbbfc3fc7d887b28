"""Dependencies of the handlers (as ``Annotated`` aliases): the API state and the caller's key
(the hot read handlers take the bare request and call ``hash_of`` themselves)."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, Header, Request

from app.api.errors import ApiError
from app.api.state import ApiState


def get_state(request: Request) -> ApiState:
    return request.app.state.reco


def key_hash(authorization: Annotated[str | None, Header(
        description="Bearer <key> (`reco keys create --tenant T` prints one)")] = None) -> bytes:
    """SHA-256 of the bearer token: the database checks it (keys are stored hashed)."""
    return hash_of(authorization)


def hash_of(authorization: str | None) -> bytes:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "missing API key",
                       hint="Send Authorization: Bearer <key>; create a key with `reco keys create`.",
                       headers={"WWW-Authenticate": "Bearer"})
    return hashlib.sha256(token.strip().encode()).digest()


State = Annotated[ApiState, Depends(get_state)]
Key = Annotated[bytes, Depends(key_hash)]
