"""Churn over REST: one user's churn risk (GET /v1/users/{id}/churn), one SQL call of reco.api_user_churn (the key
checked in the database; its tenant only), the body sent as the database built it."""

from __future__ import annotations

import psycopg
from fastapi import APIRouter, Request, Response
from psycopg_pool import PoolTimeout

from app.api.deps import checked_key
from app.api.errors import NOT_MIGRATED_DOC, from_db, unavailable
from app.api.models import Error
from app.api.params import Param, openapi, parse
from app.api.state import ApiState, unreachable

router = APIRouter(prefix="/v1")

USER = Param("user_id", "path", str, "your id of the user", max_length=200)
ERRORS = {401: {"model": Error, "description": "missing, invalid or revoked API key"},
          404: {"model": Error, "description": "unknown user, a user without a score (no activity, too short a "
                                              "history), or a tenant without a churn model"},
          422: {"model": Error, "description": "a parameter is out of range or malformed (field and reason)"},
          429: {"model": Error, "description": "the key is over its rate limit (Retry-After says when to retry)"},
          503: {"model": Error, "description": "the database is unreachable" + NOT_MIGRATED_DOC}}


@router.get("/users/{user_id}/churn", responses=ERRORS, openapi_extra=openapi(USER),
            summary="The user's churn risk: probability, tier, top reasons, model version, as_of")
async def user_churn(request: Request) -> Response:
    """The latest stored score of the churn_score job (`source: scores`), else one computed live in SQL from the
    active logistic model's coefficient rows (`source: live`). Reasons: the features that raise the risk most,
    with their value and contribution (log-odds)."""
    p = parse(request, USER)
    st: ApiState = request.app.state.reco
    key = checked_key(request)
    try:
        body = await st.read("SELECT reco.api_user_churn(%s, %s)::text", (key, p["user_id"]))
    except (psycopg.Error, PoolTimeout) as exc:
        if unreachable(exc):
            raise unavailable("the churn score", read=True) from exc
        raise from_db(exc) from exc
    st.seen(key)
    return Response(body, media_type="application/json")
