"""The read side: recommendations, starter sets, similar features, plans, and the floor (ping).

Each request is one call of a SQL function that authenticates the key, does the work, records the
exposures and returns the body as JSON, sent as it is. When the database is slow (past the
statement timeout) or unreachable, recommendations, starter sets and similar features answer with
the last-known popular list and "degraded": true.

These handlers take the bare request and parse their few parameters themselves (app.api.params):
FastAPI's per-parameter machinery cost more CPU than everything else the API process does for a
request. The parameters are declared once, for parsing and for the OpenAPI document."""

from __future__ import annotations

import re
import uuid

import psycopg
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from app.api.deps import checked_key
from app.api.errors import NOT_MIGRATED_DOC, ApiError, api_error_handler, db_error_handler, from_db, unavailable
from app.api.models import Error, Plans, Recommendations, Similar
from app.api.params import Param, openapi, parse
from app.api.state import ApiState, unreachable

router = APIRouter(prefix="/v1")

ERRORS = {401: {"model": Error, "description": "missing, invalid or revoked API key"},
          422: {"model": Error, "description": "a parameter is out of range or malformed (field and reason)"},
          429: {"model": Error, "description": "the key is over its rate limit (Retry-After says when to retry)"},
          503: {"model": Error, "description": "the database is unreachable and the key was never seen working"
                                          + NOT_MIGRATED_DOC}}

USER = Param("user_id", "path", str, "your id of the user", max_length=200)
FEATURE = Param("feature_id", "path", str, "your id of the feature", max_length=200)
EXPLAIN = Param("explain", "query", bool, "include each item's reasons", False)
LOG = Param("log", "query", bool, "record the exposures (what was shown) for the bandit and A/B analysis", True)
SCENARIO = Param("scenario", "query", str, "the placement: its setting overrides and the experiments running in "
                 "it (default: the tenant's settings)", max_length=63)
REC = (USER, Param("k", "query", int, "how many", 10, ge=1, le=100),
       Param("exclude_seen", "query", bool, "leave out features the user already uses (else they are "
             "down-weighted)", False),
       Param("recent", "query", str, "comma-separated feature ids used in this session: boosts their "
             "neighbours", max_length=4000),
       SCENARIO, EXPLAIN, LOG)
STARTER = (USER, Param("k", "query", int, "how many", 3, ge=1, le=100), SCENARIO, EXPLAIN, LOG)
SIMILAR = (FEATURE, Param("k", "query", int, "how many", 5, ge=1, le=100))


def _rid(request: Request) -> str:
    rid = request.headers.get("x-request-id")
    return rid[:200] if rid else uuid.uuid4().hex


async def serve(request: Request, kind: str, ident: str, k: int, options: dict, log: bool, explain: bool,
                route: str) -> Response:
    st: ApiState = request.app.state.reco
    key = checked_key(request)
    rid = _rid(request)
    try:
        body = await st.read("SELECT reco.api_serve(%s, %s, %s, %s, %s, %s, %s, %s)",
                             (key, kind, ident, k, Jsonb(options), rid, log, explain))
    except (psycopg.Error, PoolTimeout) as exc:
        if not unreachable(exc):
            raise from_db(exc) from exc
        base = {"request_id": rid, ("feature_id" if kind == "similar" else "user_id"): ident}
        return JSONResponse(st.degraded(route, key, base, k, exclude=ident if kind == "similar" else None),
                            headers={"X-Request-ID": rid})
    st.seen(key)
    return Response(body, media_type="application/json", headers={"X-Request-ID": rid})


@router.get("/users/{user_id}/recommendations", response_model=Recommendations, responses=ERRORS,
            summary="The features a user is most likely to use next", openapi_extra=openapi(*REC))
async def recommendations(request: Request) -> Response:
    """A user never seen gets cold-start recommendations (popularity, exploration), not 404.
    The exposures are recorded in the same database call unless `log=false`."""
    p = parse(request, *REC)
    options: dict = {}
    if p["exclude_seen"]:
        options["exclude_seen"] = True
    if p["recent"]:
        options["recent"] = [f.strip() for f in p["recent"].split(",") if f.strip()]
    if p["scenario"]:
        options["scenario"] = p["scenario"]
    return await serve(request, "recommendations", p["user_id"], p["k"], options, p["log"], p["explain"],
                       "/v1/users/{user_id}/recommendations")


@router.get("/users/{user_id}/starter", response_model=Recommendations, responses=ERRORS,
            summary="A starter set for a new user: k features of distinct categories",
            openapi_extra=openapi(*STARTER))
async def starter(request: Request) -> Response:
    p = parse(request, *STARTER)
    options = {"scenario": p["scenario"]} if p["scenario"] else {}
    return await serve(request, "starter", p["user_id"], p["k"], options, p["log"], p["explain"],
                       "/v1/users/{user_id}/starter")


@router.get("/features/{feature_id}/similar", response_model=Similar,
            responses={**ERRORS, 404: {"model": Error, "description": "unknown feature"}},
            summary="Features similar to a feature (co-usage; content for new features)",
            openapi_extra=openapi(*SIMILAR))
async def similar(request: Request) -> Response:
    p = parse(request, *SIMILAR)
    return await serve(request, "similar", p["feature_id"], p["k"], {}, False, False,
                       "/v1/features/{feature_id}/similar")


@router.get("/users/{user_id}/plan", response_model=Plans, responses=ERRORS,
            summary="Every plan priced for the user's recent usage, the cheapest that fits first",
            openapi_extra=openapi(USER))
async def plan(request: Request) -> Response:
    p = parse(request, USER)
    st: ApiState = request.app.state.reco
    key, rid = checked_key(request), _rid(request)
    try:
        body = await st.read("SELECT reco.api_plan(%s, %s, %s)", (key, p["user_id"], rid))
    except (psycopg.Error, PoolTimeout) as exc:
        if unreachable(exc):
            raise unavailable("pricing the plans", read=True) from exc
        raise from_db(exc) from exc
    st.seen(key)
    return Response(body, media_type="application/json", headers={"X-Request-ID": rid})


@router.get("/ping", responses=ERRORS, summary="The floor: the key checked in one database round trip, no work")
async def ping(request: Request) -> Response:
    """What every request costs before any recommendation work: the same pool, the same key check."""
    st: ApiState = request.app.state.reco
    key = checked_key(request)
    try:
        body = await st.read("SELECT row_to_json(t)::text FROM (SELECT reco.api_tenant(%s) AS tenant) AS t",
                             (key,))
    except (psycopg.Error, PoolTimeout) as exc:
        if unreachable(exc):
            raise unavailable("the ping", read=True) from exc
        raise from_db(exc) from exc
    return Response(body, media_type="application/json")


class HotRoutes:
    """The hot GETs above (recommendations, starter, similar, ping) dispatched in front of
    FastAPI's routing, to the same handlers, with the same error answers and route labels in the
    metrics. FastAPI's per-request machinery (routing over every route, the dependency solver,
    the exception and exit-stack middlewares) cost about a third of the API process's CPU for a
    request whose work is one SQL call; FastAPI still declares and documents these routes, and
    serves every other one."""

    def __init__(self, app, fastapi_app) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        hot = {recommendations, starter, similar, ping}
        self.routes: list[tuple[re.Pattern, object, object]] = [
            (route.path_regex, route, route.endpoint) for route in router.routes
            if getattr(route, "endpoint", None) in hot]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            for regex, route, endpoint in self.routes:
                match = regex.match(scope["path"])
                if match:
                    scope["app"], scope["route"], scope["path_params"] = self.fastapi_app, route, match.groupdict()
                    request = Request(scope, receive)
                    try:
                        response = await endpoint(request)
                    except ApiError as exc:
                        response = await api_error_handler(request, exc)
                    except psycopg.Error as exc:
                        response = await db_error_handler(request, exc)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
