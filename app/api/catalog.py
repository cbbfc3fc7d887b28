"""The write side: users, features and plans (upserts, batches), events, and user erasure.
Each request is one SQL call; the key is checked inside it (reco.api_tenant)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from psycopg.types.json import Jsonb

from app.api.deps import Key, State
from app.api.errors import invalid
from app.api.metrics import INGESTED
from app.api.models import (
    EVENT_EXAMPLE,
    Erased,
    Error,
    FeatureBatchIn,
    FeatureIn,
    PlanIn,
    Report,
    Stored,
    UserBatchIn,
    UserIn,
)

router = APIRouter(prefix="/v1")

ERRORS = {401: {"model": Error, "description": "missing, invalid or revoked API key"},
          422: {"model": Error, "description": "the body is malformed (field and reason)"},
          503: {"model": Error, "description": "the database is unreachable or too slow: nothing was stored"}}
MAX_BATCH = 10_000

UserId = Annotated[str, Path(min_length=1, max_length=200)]
FeatureId = Annotated[str, Path(min_length=1, max_length=200)]
PlanId = Annotated[str, Path(min_length=1, max_length=200)]


async def upsert(st: State, key: Key, function: str, rows: list[dict], what: str) -> dict:
    return await st.write(f"SELECT reco.{function}(%s, reco.api_tenant(%s))", (Jsonb(rows), key), what)


async def upsert_one(st: State, key: Key, function: str, row: dict, ident: str, what: str) -> Stored:
    report = await upsert(st, key, function, [row], what)
    if report["rejected"]:
        raise invalid([{"field": f"body.{r['field']}", "reason": r["reason"]} for r in report["rejected"]],
                      "invalid_data")
    return Stored(id=ident, stored=report["accepted"] > 0)


def _batch(rows: list, what: str) -> None:
    if len(rows) > MAX_BATCH:
        raise invalid([{"field": "body", "reason": f"at most {MAX_BATCH:,} {what} per request, got {len(rows):,}"}])


@router.put("/users/{user_id}", response_model=Stored, responses=ERRORS, summary="Create or update a user")
async def put_user(st: State, key: Key, user_id: UserId, user: UserIn) -> Stored:
    """Fields left out keep their stored value; attributes are merged (a key set to null is removed)."""
    return await upsert_one(st, key, "upsert_users", {"user_id": user_id, **user.model_dump(exclude_unset=True)},
                            user_id, "storing the user")


@router.post("/users:batch", response_model=Report, responses=ERRORS, summary="Create or update many users")
async def users_batch(st: State, key: Key, users: list[UserBatchIn]) -> dict:
    _batch(users, "users")
    return await upsert(st, key, "upsert_users", [u.model_dump(exclude_unset=True) for u in users],
                        "storing the users")


@router.put("/features/{feature_id}", response_model=Stored, responses=ERRORS,
            summary="Create or update a feature")
async def put_feature(st: State, key: Key, feature_id: FeatureId, feature: FeatureIn) -> Stored:
    """New features default to name = feature_id, category `general`, free, active."""
    return await upsert_one(st, key, "upsert_features",
                            {"feature_id": feature_id, **feature.model_dump(exclude_unset=True)},
                            feature_id, "storing the feature")


@router.post("/features:batch", response_model=Report, responses=ERRORS, summary="Create or update many features")
async def features_batch(st: State, key: Key, features: list[FeatureBatchIn]) -> dict:
    _batch(features, "features")
    return await upsert(st, key, "upsert_features", [f.model_dump(exclude_unset=True) for f in features],
                        "storing the features")


@router.put("/plans/{plan_id}", response_model=Stored, responses=ERRORS, summary="Create or replace a plan")
async def put_plan(st: State, key: Key, plan_id: PlanId, plan: PlanIn) -> Stored:
    return await upsert_one(st, key, "upsert_plans", {"plan_id": plan_id, **plan.model_dump()}, plan_id,
                            "storing the plan")


@router.post("/events", response_model=Report, responses=ERRORS, summary="Record usage events")
async def events(st: State, key: Key, body: Annotated[dict[str, Any] | list[dict[str, Any]], Body(
        description="one event, or a list of up to 10,000. Fields: event_id (optional idempotency key), user_id, "
                    "feature_id, occurred_at (ISO 8601 or epoch seconds), kind (default use), success, props. "
                    "Each event is checked: the good ones are stored, the bad ones reported by index, field and "
                    "reason; a retried batch reports duplicates and changes nothing.",
        openapi_examples={"one": {"summary": "one event", "value": EVENT_EXAMPLE},
                          "batch": {"summary": "a batch", "value": [EVENT_EXAMPLE, {
                              **EVENT_EXAMPLE, "event_id": "e-1002", "feature_id": "batch-mode"}]}})]) -> dict:
    """A use of a feature that was shown to the user within bandit_window counts as a success for
    its bandit arm, in the same transaction (the feedback loop)."""
    rows = [body] if isinstance(body, dict) else body
    _batch(rows, "events")
    report = await st.write("SELECT reco.ingest_events(%s, reco.api_tenant(%s))", (Jsonb(rows), key),
                            "storing the events")
    INGESTED.labels("accepted").inc(report["accepted"])
    INGESTED.labels("duplicate").inc(report["duplicates"])
    INGESTED.labels("rejected").inc(len(report["rejected"]))
    return report


@router.delete("/users/{user_id}", response_model=Erased,
               responses={**ERRORS, 404: {"model": Error, "description": "unknown user"}},
               summary="Erase a user everywhere (privacy requests)")
async def erase_user(st: State, key: Key, user_id: UserId) -> Erased:
    """Events and their ids, interactions, the user vector, exposures and the user row are deleted
    in one transaction; aggregates stop counting the user at the next jobs."""
    erased = await st.write("SELECT reco.erase_user(%s, reco.api_tenant(%s))", (user_id, key), "erasing the user")
    return Erased(user_id=user_id, erased=erased)
