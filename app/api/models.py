"""Request and response bodies (pydantic): what is validated on the way in and documented in
OpenAPI. The hot responses are built as JSON by the database (one function per request) and sent
as they are; their models here describe them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.api.limits import (
    MAX_DEPTH,
    MAX_DIMENSIONS,
    MAX_ID,
    MAX_JSON_BYTES,
    MAX_NAME,
    MAX_TAG,
    MAX_TAGS,
    MAX_TEXT,
    bounded_json,
    no_nul,
)


class Strict(BaseModel):
    # no unknown fields; NaN and Infinity are not numbers
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --- responses ------------------------------------------------------------------------------

class Item(BaseModel):
    rank: int
    feature_id: str
    score: float
    reasons: dict[str, Any] | None = Field(None, description="each component's contribution, 'because' "
                                           "(the user's features that led to it), the segment; with explain=true")
    source: str | None = Field(None, description="similar: 'cf' (co-usage) or 'content' (category, tags, text)")


class Recommendations(BaseModel):
    request_id: str
    user_id: str
    items: list[Item]
    variant: str | None = Field(None, description="the experiment variant the user was served (\"interleaved\" "
                                                  "for an interleaving experiment; null outside experiments)")
    degraded: bool = Field(description="true: the database was slow or unreachable and this is the "
                                       "last-known popular list")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "request_id": "5f0c2b6e1d7a4c0e9a8b3c2d1e0f9a8b", "user_id": "U1",
        "items": [{"rank": 1, "feature_id": "logo-removal", "score": 0.581},
                  {"rank": 2, "feature_id": "colorize", "score": 0.552}],
        "variant": None, "degraded": False}]})


class Similar(BaseModel):
    request_id: str
    feature_id: str
    items: list[Item]
    variant: str | None = None
    degraded: bool

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "request_id": "5f0c2b6e1d7a4c0e9a8b3c2d1e0f9a8b", "feature_id": "background-removal",
        "items": [{"rank": 1, "feature_id": "hair-refine", "score": 0.65, "source": "cf"}],
        "variant": None, "degraded": False}]})


class PlanItem(BaseModel):
    rank: int
    plan_id: str
    name: str
    expected_monthly_cost: float | None
    fits: bool
    reasons: dict[str, Any]


class Plans(BaseModel):
    request_id: str
    user_id: str
    plans: list[PlanItem]


class Rejected(BaseModel):
    index: int
    field: str
    reason: str


class Report(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[Rejected]

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "accepted": 998, "duplicates": 1,
        "rejected": [{"index": 17, "field": "feature_id", "reason": "unknown feature \"no-such\""}]}]})


class Stored(BaseModel):
    id: str
    stored: bool = Field(description="false when nothing changed (the same values were stored already)")


class Erased(BaseModel):
    user_id: str
    erased: dict[str, int] = Field(description="rows deleted per table")


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str
    hint: str | None = None
    fields: list[dict[str, Any]] | None = None
    sqlstate: str | None = None


class Error(BaseModel):
    error: ErrorDetail


# --- requests -------------------------------------------------------------------------------

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID), AfterValidator(no_nul)]
Name = Annotated[str, StringConstraints(max_length=MAX_NAME), AfterValidator(no_nul)]
Tag = Annotated[str, StringConstraints(max_length=MAX_TAG), AfterValidator(no_nul)]
FreeJson = Annotated[dict[str, Any], AfterValidator(bounded_json)]


class UserIn(Strict):
    paid: bool | None = Field(None, description="paid users may be recommended paid-only features")
    attributes: FreeJson | None = Field(
        None, description=f"merged into the stored ones; a key set to null is removed (at most "
                          f"{MAX_JSON_BYTES // 1024} KiB of JSON, {MAX_DEPTH} levels deep)",
        examples=[{"industry": "fashion", "usage_band": "heavy"}])


class UserBatchIn(UserIn):
    user_id: Id


class FeatureIn(Strict):
    name: Name | None = None
    category: Name | None = None
    requires_paid: bool | None = None
    tags: list[Tag] | None = Field(None, max_length=MAX_TAGS)
    description: Annotated[str, StringConstraints(max_length=MAX_TEXT), AfterValidator(no_nul)] | None = None
    active: bool | None = None
    embedding: list[float] | None = Field(
        None, min_length=1, max_length=MAX_DIMENSIONS,
        description="a client vector (folded to 64 dims); every client vector of a tenant has the same "
                    "length: the first one stored sets it")


class FeatureBatchIn(FeatureIn):
    feature_id: Id


class PlanIn(Strict):
    name: Name | None = None
    price: float = Field(ge=0, lt=1e10, description="per month")
    quota: int | None = Field(None, ge=0, le=2_147_483_647, description="uses per month; null = unlimited")
    overage_price: float | None = Field(None, ge=0, lt=1e8, description="per use above the quota; null = none")
    includes_paid_features: bool = False
    active: bool = True


#: an event as POST /v1/events takes it (each is checked by the database, which reports bad ones
#: by index, field and reason while storing the good ones)
EVENT_EXAMPLE = {"event_id": "e-1001", "user_id": "U1", "feature_id": "background-removal",
                 "occurred_at": "2026-11-20T10:00:00Z", "kind": "use", "success": True}
