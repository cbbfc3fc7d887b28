"""Probes and metrics: /healthz (the process), /readyz (the database reachable and its schema
current; else 503 and the reason in words), /metrics (Prometheus)."""

from __future__ import annotations

import hmac
import logging

import psycopg
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from app.api import metrics
from app.api.deps import State
from app.api.state import where
from app.migrate import alembic_head, pending_given

log = logging.getLogger("pgreco.readyz")

router = APIRouter()


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable and its migrations are current",
            responses={503: {"description": "not ready: the reason is in the body, in words"}})
async def readyz(st: State) -> JSONResponse:
    try:
        async with st.connection(st.reads) as conn:
            cur = await conn.execute("SELECT reco.api_readiness()")
            readiness = (await cur.fetchone())[0]
            schema, applied = readiness["schema"], readiness["sql_files"]
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction, psycopg.errors.InvalidSchemaName,
            psycopg.errors.InsufficientPrivilege):
        return JSONResponse({"status": "not migrated", "reason": "schema not migrated: run `reco migrate`",
                             "hint": "run `reco migrate`"}, 503)
    except (psycopg.Error, PoolTimeout) as exc:
        # the answer is for anyone: where the database is (a host, a socket path) goes to the log only
        reason = await st.diagnose(exc)
        log.warning("not ready: %s", reason)
        return JSONResponse({"status": "unavailable", "reason": reason.replace(f" at {where(st.url)}", "")}, 503)
    head, pending = alembic_head(), pending_given(applied)
    if schema != head or pending:
        what = f"schema at {schema or 'nothing'}, code at {head}" if schema != head else \
            f"{len(pending)} SQL file(s) changed: {', '.join(pending)}"
        reason = f"migrations pending ({what}): run `reco migrate`"
        return JSONResponse({"status": "migrations pending", "reason": reason,
                             "schema": schema, "head": head, "sql_files": pending, "hint": "run `reco migrate`"}, 503)
    return JSONResponse({"status": "ready", "schema": head})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus(st: State, request: Request) -> Response:
    """The process metrics, and the job metrics read from reco.job_runs (see app/observability/): per
    tenant for a scraper that sends ``Authorization: Bearer <RECO_METRICS_TOKEN>``, else summed over
    tenants (tenant "*"), so a stranger learns no tenant's name."""
    return Response(metrics.render(await st.job_health(), per_tenant=scraper_authorised(st, request),
                                   churn=await st.churn_health()),
                    media_type=metrics.CONTENT_TYPE)


def scraper_authorised(st: State, request: Request) -> bool:
    token = st.settings.metrics_token
    if token is None or not token.get_secret_value():
        return False
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.get_secret_value().encode())
