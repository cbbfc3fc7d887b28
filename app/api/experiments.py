"""Experiments over REST: scenarios, metrics, experiments (create, start, stop, list) and reports.

Each request is one SQL call of a reco.api_* function (the key first: it names the tenant); the
statistics are the SQL report's (reco.experiment_report), sent as they are."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.deps import Key, State
from app.api.errors import NOT_MIGRATED_DOC
from app.api.limits import value_problem
from app.api.models import Error

router = APIRouter(prefix="/v1")

ERRORS = {401: {"model": Error, "description": "missing, invalid or revoked API key"},
          404: {"model": Error, "description": "unknown experiment or scenario"},
          409: {"model": Error, "description": "the name exists"},
          422: {"model": Error, "description": "a field is malformed (field and reason)"},
          429: {"model": Error, "description": "the key is over its rate limit (Retry-After says when to retry)"},
          503: {"model": Error, "description": "the database is unreachable or too slow" + NOT_MIGRATED_DOC}}

Name = Annotated[str, Path(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
Overrides = Annotated[dict[str, float | int], Field(max_length=20, description="serving settings: value")]


class Checked(BaseModel):
    """No NUL in any string or key (PostgreSQL text cannot hold one: it was a 500), no NaN or
    Infinity (JSON has neither), at most 8 levels deep."""

    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        problem = value_problem(data)
        if problem:
            where, why = problem
            raise ValueError(f"{where}: {why}" if where else why)
        return data


class VariantIn(Checked):
    name: str = Field(min_length=1, max_length=63)
    weight: float = Field(1.0, gt=0, le=1e6)
    overrides: Overrides = {}


class ExperimentIn(Checked):
    name: str = Field(min_length=1, max_length=63)
    variants: list[VariantIn] = Field(min_length=2, max_length=10, description="the first is the control")
    scenario: str = Field("default", max_length=63)
    kind: Literal["ab", "interleave"] = "ab"
    traffic: float = Field(1.0, gt=0, le=1)
    salt: str | None = Field(None, max_length=100)
    primary_metric: str = Field("clicked", max_length=63)
    secondary_metrics: list[str] = Field([], max_length=20)
    guardrail_metrics: list[str] = Field([], max_length=20)
    oec: dict[str, float] = Field({}, max_length=20, description="metric: weight (the overall evaluation criterion)")
    looks: int = Field(1, ge=1, le=20)
    planned_users: int | None = Field(None, gt=0)
    alpha: float = Field(0.05, gt=0, lt=0.5)
    pre_period: str = Field("14 days", max_length=40)
    description: str = Field("", max_length=2000)

    model_config = {"json_schema_extra": {"examples": [{
        "name": "usercf-boost", "scenario": "home", "traffic": 0.5, "primary_metric": "clicked",
        "guardrail_metrics": ["uses"],
        "variants": [{"name": "control"}, {"name": "boost", "overrides": {"weight_usercf": 0.3}}]}]}}


class ScenarioIn(Checked):
    overrides: Overrides = {}
    description: str = Field("", max_length=2000)


class MetricIn(Checked):
    event_kind: str = Field(min_length=1, max_length=100)
    agg: Literal["any", "count", "sum", "mean"]
    prop: str | None = Field(None, max_length=100)
    higher_is_better: bool = True
    description: str = Field("", max_length=2000)



@router.put("/scenarios/{name}", responses=ERRORS, summary="Create or change a scenario (a placement)")
async def put_scenario(st: State, key: Key, name: Name, body: ScenarioIn) -> dict:
    """A scenario is a named set of serving-setting overrides on top of the tenant's settings;
    requests name it with `?scenario=`."""
    overrides = await st.write("SELECT reco.api_upsert_scenario(%s, %s, %s, %s)",
                            (key, name, Jsonb(body.overrides), body.description), "storing the scenario")
    return {"scenario": name, "overrides": overrides}


@router.put("/metrics/{name}", responses=ERRORS, summary="Define a metric over the users' events")
async def put_metric(st: State, key: Key, name: Name, body: MetricIn) -> dict:
    await st.write("SELECT reco.api_create_metric(%s, %s, %s, %s, %s, %s, %s)",
                (key, name, body.event_kind, body.agg, body.prop, body.higher_is_better, body.description),
                "storing the metric")
    return {"metric": name, **body.model_dump()}


@router.post("/experiments", status_code=201, responses=ERRORS, summary="Create an experiment (a draft)")
async def create_experiment(st: State, key: Key, body: ExperimentIn) -> dict:
    options = body.model_dump(exclude={"name", "variants"}, exclude_none=True)
    await st.write("SELECT reco.api_create_experiment(%s, %s, %s, %s)",
                (key, body.name, Jsonb([v.model_dump() for v in body.variants]), Jsonb(options)),
                "creating the experiment")
    return await get_experiment(st, key, body.name)


@router.get("/experiments", responses=ERRORS, summary="The tenant's experiments")
async def list_experiments(st: State, key: Key) -> list[dict]:
    return await st.write("SELECT reco.api_experiments(%s)", (key,), "listing the experiments")


@router.get("/experiments/{name}", responses=ERRORS, summary="One experiment")
async def get_experiment(st: State, key: Key, name: Name) -> dict:
    return await st.write("SELECT reco.api_experiment(%s, %s)", (key, name), "reading the experiment")


@router.post("/experiments/{name}/start", responses=ERRORS, summary="Start a draft experiment")
async def start_experiment(st: State, key: Key, name: Name) -> dict:
    await st.write("SELECT reco.api_start_experiment(%s, %s)", (key, name), "starting the experiment")
    return await get_experiment(st, key, name)


@router.post("/experiments/{name}/stop", responses=ERRORS, summary="Stop an experiment")
async def stop_experiment(st: State, key: Key, name: Name) -> dict:
    await st.write("SELECT reco.api_stop_experiment(%s, %s)", (key, name), "stopping the experiment")
    return await get_experiment(st, key, name)


@router.get("/experiments/{name}/report", responses=ERRORS,
            summary="The report: sample-ratio check, lifts with CIs, CUPED, Bayesian, sequential, decision")
async def report(st: State, key: Key, name: Name) -> dict:
    """The rows of `reco.experiment_report(name)`: the SRM check first, one row per variant × metric,
    and the decision with its reasons."""
    rows = await st.write("SELECT coalesce(json_agg(row_to_json(r)), '[]')"
                           " FROM reco.api_experiment_report(%s, %s) r", (key, name),
                       "computing the report")
    decision = next((r for r in rows if r["section"] == "decision"), None)
    return {"experiment": name, "decision": decision and decision["decision"],
            "reasons": decision and decision["note"], "rows": rows}
