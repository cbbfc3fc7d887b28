"""The REST API: a thin FastAPI caller of the SQL functions (`reco serve`, docs at /docs).

The pools open in the lifespan and live on ``app.state.reco``; every request is one SQL call on
a pooled connection. ``create_app`` is the factory uvicorn runs (``--factory``); ``start_line``
is what `reco serve` prints before it starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import console
from app.api import catalog, churn, docs, experiments, health, retention, serving
from app.api.errors import (
    ApiError,
    api_error_handler,
    db_error_handler,
    http_error_handler,
    internal_error_handler,
    validation_error_handler,
)
from app.api.fairness import Fairness
from app.api.guards import RequestGuard
from app.api.limits import BodyLimit
from app.api.metrics import MetricsMiddleware, configure_logging
from app.api.state import ApiState
from app.console import churn as console_churn
from app.settings import Settings, get_settings

DESCRIPTION = """
pgreco recommends the product features each user is most likely to use next, inside PostgreSQL.

Every request needs `Authorization: Bearer <key>` (`reco keys create --tenant T` prints one); a key
belongs to one tenant. Errors answer `{"error": {"status", "code", "message", "hint", "fields"}}`,
unknown routes (404), wrong methods (405), bodies that are not JSON or too large (413) included.
A batch is checked row by row: the good rows are stored, the bad ones reported by index, field and
reason. A key over its rate limit, or a tenant over one of its budgets (events or request bytes a second, statements
at once, console pages), gets 429 with `Retry-After` (whole seconds). When the database
is slow or unreachable, recommendations, starter sets and similar features answer with the
last-known popular list and `"degraded": true`; writes answer 503. A database whose schema is older
than the code answers 503 `not_migrated` (run `reco migrate`). Every answer carries
`X-Request-ID` (yours, or a new one).
"""


def start_line(host: str, port: int, workers: int = 1, settings: Settings | None = None) -> str:
    """The line `reco serve` prints before it starts: where it listens and what to open."""
    settings = settings or get_settings()
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    return (f"pgreco API listening on {base} (docs {base}/docs, readiness {base}/readyz, metrics {base}/metrics); "
            f"{workers} worker{'s' if workers != 1 else ''} x {settings.api_pool_size} read connections; "
            f"request log at level {settings.log_level} (RECO_LOG_LEVEL); answers Host "
            f"{', '.join(settings.trusted_host_names)} (RECO_TRUSTED_HOSTS)")


def create_app(settings: Settings | None = None, url: str | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from app import db

        state = ApiState(settings, url or db.api_database_url(settings))
        await state.open()
        app.state.reco = state
        try:
            yield
        finally:
            await state.close()

    configure_logging(settings.log_level)
    # the docs, /openapi.json and / are routes of app.api.docs (offline, counted by route)
    app = FastAPI(title="pgreco", version="1", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None,
                  openapi_tags=[{"name": "serving"}, {"name": "catalog and events"}, {"name": "experiments"},
                                {"name": "operations"}])
    app.include_router(serving.router, tags=["serving"])
    app.include_router(catalog.router, tags=["catalog and events"])
    app.include_router(health.router, tags=["operations"])
    app.include_router(experiments.router, tags=["experiments"])
    app.include_router(retention.router, tags=["retention"])
    app.include_router(churn.router, tags=["churn"])
    app.include_router(docs.router)
    app.include_router(console.router)  # the web console under /console (app/console)
    app.include_router(console_churn.router)  # its churn page (app/console/churn.py)
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(psycopg.Error, db_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Exception, internal_error_handler)
    # middlewares, innermost first: the hot GETs, the body limit, the tenants' budgets (before a body
    # is read), metrics and the request log, then the guard (Host, UTF-8)
    app.add_middleware(serving.HotRoutes, fastapi_app=app)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(Fairness)
    app.add_middleware(MetricsMiddleware, fastapi_app=app)
    app.add_middleware(RequestGuard, trusted_hosts=settings.trusted_host_names)  # outermost: Host, UTF-8

    def openapi() -> dict:
        # the bearer key, so that /docs has an "Authorize" button and every /v1 path says it needs it
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes, tags=app.openapi_tags)
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "a key from `reco keys create`"}}
            for path, ops in schema["paths"].items():
                if path.startswith("/v1/"):
                    for op in ops.values():
                        op["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app
