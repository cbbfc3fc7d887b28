"""The write side: users, features and plans (upserts, batches), events, and user erasure.
Each request is one SQL call of a reco.api_* function: the key is checked inside it and names the tenant.

A batch is checked row by row: a row the API refuses (app.api.limits: NUL, NaN, sizes; the
models' types) is reported by index, field and reason like the rows the database refuses, and
the others are stored. Only the batch as a whole (not a JSON array, too many rows, too large a
body) is refused whole."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from psycopg.types.json import Jsonb
from pydantic import AfterValidator, BaseModel, ValidationError

from app.api import offload
from app.api.deps import Key, State
from app.api.errors import NOT_MIGRATED_DOC, invalid, reason
from app.api.fairness import charge_events
from app.api.limits import MAX_BATCH, MAX_ID, no_nul
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

EVENTS_DOC = ("one event, or a list of up to 10,000. Fields: event_id (optional idempotency key), user_id, feature_id, "
              "occurred_at (ISO 8601 or epoch seconds), kind (default use), success, props. Each event is checked: the "
              "good ones are stored, the bad ones reported by index, field and reason; a retried batch reports "
              "duplicates and changes nothing.")
#: the body of POST /v1/events, documented here: the handler reads it itself (see events)
EVENTS_BODY = {"requestBody": {"required": True, "description": EVENTS_DOC, "content": {"application/json": {
    "schema": {"anyOf": [{"type": "object"}, {"type": "array", "maxItems": MAX_BATCH, "items": {"type": "object"}}]},
    "examples": {"one": {"summary": "one event", "value": EVENT_EXAMPLE},
                 "batch": {"summary": "a batch", "value": [EVENT_EXAMPLE, {**EVENT_EXAMPLE, "event_id": "e-1002",
                                                                           "feature_id": "batch-mode"}]}}}}}}

ERRORS = {401: {"model": Error, "description": "missing, invalid or revoked API key"},
          413: {"model": Error, "description": "the body is larger than RECO_API_MAX_BODY_BYTES"},
          422: {"model": Error, "description": "the body is malformed (field and reason)"},
          429: {"model": Error, "description": "the key is over its rate limit, or its tenant over one of its budgets "
                                          "(Retry-After says when to retry): nothing was stored"},
          503: {"model": Error, "description": "the database is unreachable or too slow: nothing was stored"
                                          + NOT_MIGRATED_DOC}}

UserId = Annotated[str, Path(min_length=1, max_length=MAX_ID), AfterValidator(no_nul)]
FeatureId = Annotated[str, Path(min_length=1, max_length=MAX_ID), AfterValidator(no_nul)]
PlanId = Annotated[str, Path(min_length=1, max_length=MAX_ID), AfterValidator(no_nul)]

#: the rows the API refused: [{"index", "field", "reason"}]
Rejected = list[dict[str, Any]]


async def upsert(st: State, key: Key, function: str, rows: list[dict], what: str) -> dict:
    return await st.write(f"SELECT reco.api_{function}(%s, %s)", (key, Jsonb(rows)), what)


async def upsert_one(st: State, key: Key, function: str, row: dict, ident: str, what: str) -> Stored:
    report = await upsert(st, key, function, [row], what)
    if report["rejected"]:
        raise invalid([{"field": f"body.{r['field']}", "reason": r["reason"]} for r in report["rejected"]],
                      "invalid_data")
    return Stored(id=ident, stored=report["accepted"] > 0)


async def store_checked(st: State, key: Key, sql: str, good: list[tuple[int, dict]], rejected: Rejected,
                        what: str) -> dict:
    """The good rows to the database (always called, even with none: it checks the key), and its
    report merged with the API's rejections, every index that of the row in the request."""
    return await store_prepared(st, key, sql, Jsonb([row for _, row in good]), [i for i, _ in good], rejected,
                                what)


async def store_prepared(st: State, key: Key, sql: str, payload: Jsonb | str, where: list[int],
                         rejected: Rejected, what: str) -> dict:
    """``store_checked`` of rows already serialized (``payload``: a JSON array; ``where``: the index
    in the request of each of its rows)."""
    report = await st.write(sql, (key, payload), what)
    merged = rejected + [{**r, "index": where[r["index"]]} for r in report["rejected"]]
    report["rejected"] = sorted(merged, key=lambda r: r["index"])
    return report


def check_rows(rows: list, model: type[BaseModel]) -> tuple[list[tuple[int, dict]], Rejected]:
    """Each row validated on its own: (index, row as stored) for the good ones, and a rejection
    (index, field, reason: the first problem) for each bad one."""
    good, rejected = [], []
    for i, row in enumerate(rows):
        try:
            good.append((i, model.model_validate(row).model_dump(exclude_unset=True)))
        except ValidationError as exc:
            e = exc.errors()[0]
            rejected.append({"index": i, "field": ".".join(str(p) for p in e["loc"]) or "(row)",
                             "reason": reason(e["msg"])})
    return good, rejected


def _batch(rows: list, what: str) -> None:
    if len(rows) > MAX_BATCH:
        raise invalid([{"field": "body", "reason": f"at most {MAX_BATCH:,} {what} per request, got {len(rows):,}"}])


def batch_body(model: type[BaseModel]) -> dict:
    """OpenAPI of a batch body: an array of the model (the handler takes any array and checks
    each row itself, so that one bad row does not refuse the others)."""
    return {"requestBody": {"content": {"application/json": {"schema": {
        "type": "array", "maxItems": MAX_BATCH, "items": model.model_json_schema()}}}}}


async def tenant_dimensions(st: State, key: Key) -> int | None:
    """The length of the tenant's client vectors (the first one stored sets it), None before any."""
    return await st.write("SELECT reco.api_embedding_dimensions(%s)", (key,), "checking the embedding")


async def check_dimensions(st: State, key: Key, good: list[tuple[int, dict]]) -> Rejected:
    """Client vectors must all have the tenant's length: the rows whose vector does not are taken
    out of ``good`` and returned as rejections."""
    if not any(row.get("embedding") is not None for _, row in good):
        return []
    expected = await tenant_dimensions(st, key)
    rejected: Rejected = []
    kept = []
    for i, row in good:
        vector = row.get("embedding")
        if vector is not None and expected is None:
            expected = len(vector)  # the batch's first vector sets it for a tenant without any
        if vector is not None and len(vector) != expected:
            rejected.append({"index": i, "field": "embedding",
                             "reason": f"{len(vector)} dimensions; this tenant's vectors have {expected}"})
        else:
            kept.append((i, row))
    good[:] = kept
    return rejected


@router.put("/users/{user_id}", response_model=Stored, responses=ERRORS, summary="Create or update a user")
async def put_user(st: State, key: Key, user_id: UserId, user: UserIn) -> Stored:
    """Fields left out keep their stored value; attributes are merged (a key set to null is removed)."""
    return await upsert_one(st, key, "upsert_users", {"user_id": user_id, **user.model_dump(exclude_unset=True)},
                            user_id, "storing the user")


@router.post("/users:batch", response_model=Report, responses=ERRORS, summary="Create or update many users",
             openapi_extra=batch_body(UserBatchIn))
async def users_batch(st: State, key: Key, users: Annotated[list[Any], Body(
        description="up to 10,000 users; each row is checked on its own: the good ones are stored, the bad "
                    "ones reported by index, field and reason")]) -> dict:
    _batch(users, "users")
    good, rejected = check_rows(users, UserBatchIn)
    return await store_checked(st, key, "SELECT reco.api_upsert_users(%s, %s)", good, rejected,
                               "storing the users")


@router.put("/features/{feature_id}", response_model=Stored, responses=ERRORS,
            summary="Create or update a feature")
async def put_feature(st: State, key: Key, feature_id: FeatureId, feature: FeatureIn) -> Stored:
    """New features default to name = feature_id, category `general`, free, active."""
    wrong = await check_dimensions(st, key, [(0, feature.model_dump(exclude_unset=True))])
    if wrong:
        raise invalid([{"field": "body.embedding", "reason": wrong[0]["reason"]}])
    return await upsert_one(st, key, "upsert_features",
                            {"feature_id": feature_id, **feature.model_dump(exclude_unset=True)},
                            feature_id, "storing the feature")


@router.post("/features:batch", response_model=Report, responses=ERRORS,
             summary="Create or update many features", openapi_extra=batch_body(FeatureBatchIn))
async def features_batch(st: State, key: Key, features: Annotated[list[Any], Body(
        description="up to 10,000 features; each row is checked on its own: the good ones are stored, the "
                    "bad ones reported by index, field and reason")]) -> dict:
    _batch(features, "features")
    good, rejected = check_rows(features, FeatureBatchIn)
    rejected += await check_dimensions(st, key, good)
    return await store_checked(st, key, "SELECT reco.api_upsert_features(%s, %s)", good, rejected,
                               "storing the features")


@router.put("/plans/{plan_id}", response_model=Stored, responses=ERRORS, summary="Create or replace a plan")
async def put_plan(st: State, key: Key, plan_id: PlanId, plan: PlanIn) -> Stored:
    return await upsert_one(st, key, "upsert_plans", {"plan_id": plan_id, **plan.model_dump()}, plan_id,
                            "storing the plan")


@router.post("/events", response_model=Report, responses=ERRORS, summary="Record usage events",
             openapi_extra=EVENTS_BODY)
async def events(request: Request, st: State, key: Key) -> dict:
    """A use of a feature that was shown to the user within bandit_window counts as a success for
    its bandit arm, in the same transaction (the feedback loop)."""
    # read and checked here, not by FastAPI: a large batch is parsed off the event loop (app.api.offload)
    prepared = await offload.prepare(await request.body())
    if not isinstance(prepared, offload.Prepared):
        raise invalid(prepared)
    charge_events(request, len(prepared.where))
    report = await store_prepared(st, key, "SELECT reco.api_ingest_events(%s, %s::jsonb)", prepared.payload,
                                  prepared.where, prepared.rejected, "storing the events")
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
    erased = await st.write("SELECT reco.api_erase_user(%s, %s)", (key, user_id), "erasing the user")
    return Erased(user_id=user_id, erased=erased)
