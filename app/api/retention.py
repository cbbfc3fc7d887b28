"""The retention list over REST: make today's list (POST) or read a stored one (GET).

Each request is one SQL call of a reco.api_* function (sql/088_retention_loop.sql; the key first: it names the
tenant and is checked in the database); the list is the SQL's (reco.retention_list), sent as it is."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from psycopg.types.json import Jsonb
from pydantic import Field

from app.api.deps import Key, State
from app.api.errors import NOT_MIGRATED_DOC
from app.api.experiments import Checked
from app.api.models import Error

router = APIRouter(prefix="/v1")

ERRORS = {401: {"model": Error, "description": "missing, invalid or revoked API key"},
          404: {"model": Error, "description": "no churn scores yet, or no such list"},
          422: {"model": Error, "description": "a field is malformed (field and reason)"},
          429: {"model": Error, "description": "the key is over its rate limit (Retry-After says when to retry)"},
          503: {"model": Error, "description": "the database is unreachable or too slow" + NOT_MIGRATED_DOC}}

Limit = Annotated[int, Query(ge=1, le=100_000, description="contacts returned, in rank order")]
ActionName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class ActionIn(Checked):
    cost: float = Field(ge=0, le=1_000_000, description="cost per contact")
    win_back_rate: float = Field(ge=0, le=1, description="assumed share of would-be churners won back")


class RetentionListIn(Checked):
    budget: float = Field(ge=0, le=1e9, description="the most the treated users' paid actions may cost")
    actions: dict[ActionName, ActionIn] | None = Field(
        None, min_length=1, max_length=20, description="replaces the tenant's actions for this list")

    model_config = {"json_schema_extra": {"examples": [{
        "budget": 500, "actions": {"coupon": {"cost": 5.0, "win_back_rate": 0.3},
                                   "push": {"cost": 0, "win_back_rate": 0.03}}}]}}


@router.post("/retention/list", status_code=201, responses=ERRORS,
             summary="Make, store and return today's retention list")
async def make_list(st: State, key: Key, body: RetentionListIn, limit: Limit = 1000) -> dict:
    """Each churn-scored user's best action by expected profit E = p × r × V − cost; paid actions by E/cost
    within `budget`, free ones outside it, E > 0 only; do-not-contact, cooldown and cap respected. Users with
    `held_out: true` are the list's holdout: do not contact them (they measure the actions' real win-back rates)."""
    actions = None if body.actions is None else Jsonb({k: v.model_dump() for k, v in body.actions.items()})
    return await st.write("SELECT reco.api_retention_list(%s, %s::numeric, %s, %s)",
                          (key, str(body.budget), actions, limit), "making the retention list")


@router.get("/retention/list", responses=ERRORS, summary="A stored retention list (the latest by default)")
async def get_list(st: State, key: Key, limit: Limit = 1000,
                   list_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None) -> dict:
    """The list as it was made, and once it matured whether each user stayed (`retained`)."""
    return await st.write("SELECT reco.api_retention_list_show(%s, %s, %s)", (key, list_id, limit),
                          "reading the retention list")
