"""Prometheus metrics and the request log.

Metrics: requests and latency per route, degraded answers, ingested events, pool use, stale
connections replaced, retried statements, requests over their key's rate limit; and, read from
reco.job_runs at scrape time, each job's last success and failures per tenant. With several
worker processes (``reco serve --workers N``) the process metrics are collected across processes
through PROMETHEUS_MULTIPROC_DIR, which `reco serve` sets up.

The request log: one line per request (logger ``pgreco.request``), at INFO for answers below 500
and WARNING from 500 on, so RECO_LOG_LEVEL=warning keeps only the server errors."""

from __future__ import annotations

import logging
import os
import re
import time
import uuid

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401  (re-exported)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from starlette.routing import Mount, compile_path

REQUESTS = Counter("reco_http_requests_total", "HTTP requests", ["route", "method", "status"])
LATENCY = Histogram("reco_http_request_duration_seconds", "HTTP request duration", ["route"],
                    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
DEGRADED = Counter("reco_degraded_responses_total",
                   "answers from the last-known popular list (database slow or unreachable)", ["route"])
INGESTED = Counter("reco_ingest_events_total", "events received by POST /v1/events", ["result"])
POOL = Gauge("reco_db_pool_connections", "database pool connections", ["pool", "state"],
             multiprocess_mode="livesum")
STALE_CONNECTIONS = Counter("reco_db_stale_connections_total",
                            "pooled connections found dead before use (database restarted) and replaced", ["pool"])
RETRIES = Counter("reco_db_retries_total", "statements run again after a serialization failure (40001) or "
                  "a deadlock (40P01)", ["sqlstate"])
OVER_BUDGET = Counter("reco_tenant_over_budget_total", "requests answered 429: their tenant was over one of its "
                      "budgets (app.api.budgets; per worker process)", ["budget"])
RATE_LIMITED = Counter("reco_rate_limited_total", "requests answered 429: the API key was over its rate limit "
                       "(RECO_API_RATE_LIMIT, per worker process)", ["route"])

log = logging.getLogger("pgreco.request")

#: a request id taken from the client: visible ASCII, no spaces, at most 200 characters
_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,200}")


def render(jobs: list[tuple] | None = None, per_tenant: bool = False, churn: list[tuple] | None = None) -> bytes:
    """The exposition text: the process metrics, then the job metrics given (as read from the
    database by ApiState.job_health; None = the database could not be read), per tenant for an
    authorised scraper (RECO_METRICS_TOKEN), else summed over tenants: no tenant slug is shown."""
    if jobs is not None and not per_tenant:
        jobs = by_job(jobs)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest()
    if churn is not None and not per_tenant:
        churn = by_churn(churn)
    return text + generate_latest(_JobRegistry(jobs)) + generate_latest(_ChurnRegistry(churn or []))


def by_churn(rows: list[tuple]) -> list[tuple]:
    """The churn monitoring over every tenant (tenant "*"): the largest score PSI, the lowest matured AUC and
    validation AUC, whether any tenant's retrain is due, the oldest latest scoring day."""
    def pick(values, f):
        values = [v for v in values if v is not None]
        return f(values) if values else None

    if not rows:
        return [("*", None, None, None, None, False, None)]
    cols = list(zip(*rows, strict=True))
    return [("*", None, pick(cols[2], min), pick(cols[3], max), pick(cols[4], min), any(cols[5]), pick(cols[6], min))]


class _ChurnRegistry:
    """One scrape's churn model metrics (reco.api_churn_health; sql/084_churn_monitoring.sql)."""

    def __init__(self, rows: list[tuple]) -> None:
        self.rows = rows

    def collect(self):
        fams = {
            "auc": GaugeMetricFamily("reco_churn_validation_auc", "the active churn model's AUC on its time-split "
                                     "validation", labels=["tenant"]),
            "psi": GaugeMetricFamily("reco_churn_score_psi", "PSI of the latest churn scores against the active "
                                     "model's validation (NaN: not checked yet)", labels=["tenant"]),
            "matured": GaugeMetricFamily("reco_churn_matured_auc", "AUC of the newest stored churn scores whose "
                                         "labels have matured (NaN: none yet)", labels=["tenant"]),
            "due": GaugeMetricFamily("reco_churn_retrain_due", "1 when the churn monitoring queued a retrain "
                                     "(drift or AUC decay past its setting)", labels=["tenant"]),
            "day": GaugeMetricFamily("reco_churn_scored_day_timestamp_seconds", "the latest churn scoring day "
                                     "(Unix time of its 00:00 UTC; 0 = none)", labels=["tenant"]),
        }
        nan = float("nan")
        for tenant, _version, auc, psi, matured, due, day in self.rows:
            fams["auc"].add_metric([tenant], nan if auc is None else auc)
            fams["psi"].add_metric([tenant], nan if psi is None else psi)
            fams["matured"].add_metric([tenant], nan if matured is None else matured)
            fams["due"].add_metric([tenant], 1 if due else 0)
            fams["day"].add_metric([tenant], day or 0)
        yield from fams.values()


def by_job(jobs: list[tuple]) -> list[tuple]:
    """Per job over every tenant (tenant label "*"): the oldest last success (a tenant without one
    counts as none), failed runs summed, the last run failed in any, the earliest wait for the loop."""
    out: dict[str, list] = {}
    for job, _tenant, success_at, failures, was_failed, waiting_since in jobs:
        if job not in out:
            out[job] = [job, "*", success_at, failures, bool(was_failed), waiting_since]
            continue
        row = out[job]
        row[2] = None if row[2] is None or success_at is None else min(row[2], success_at)
        row[3] += failures
        row[4] = row[4] or bool(was_failed)
        row[5] = min(w for w in (row[5], waiting_since) if w is not None) if row[5] or waiting_since else None
    return [tuple(r) for r in out.values()]


class _JobRegistry:
    """A registry of one scrape's job metrics (generate_latest only calls collect())."""

    def __init__(self, jobs: list[tuple] | None) -> None:
        self.jobs = jobs

    def collect(self):
        up = GaugeMetricFamily("reco_job_metrics_up", "1 when the job metrics below could be read from the database")
        up.add_metric([], 0 if self.jobs is None else 1)
        yield up
        last = GaugeMetricFamily("reco_job_last_success_timestamp_seconds",
                                 "end of the job's last successful run (Unix time; 0 = none in 30 days)",
                                 labels=["job", "tenant"])
        failed = GaugeMetricFamily("reco_job_failed_runs_24h", "failed runs of the job in the last 24 hours",
                                   labels=["job", "tenant"])
        last_failed = GaugeMetricFamily("reco_job_last_run_failed", "1 when the job's last finished run failed",
                                        labels=["job", "tenant"])
        waiting = GaugeMetricFamily("reco_job_waiting_since_timestamp_seconds",
                                    "since when the job's Python step waits for `reco jobs loop` while the tenant "
                                    "serves a fallback (Unix time; 0 = nothing waits)", labels=["job", "tenant"])
        for job, tenant, success_at, failures, was_failed, waiting_since in self.jobs or ():
            last.add_metric([job, tenant], success_at or 0)
            failed.add_metric([job, tenant], failures)
            last_failed.add_metric([job, tenant], 1 if was_failed else 0)
            waiting.add_metric([job, tenant], waiting_since or 0)
        yield from (last, failed, last_failed, waiting)


class PoolOutageLog(logging.Filter):
    """psycopg_pool's logger (``psycopg.pool``) during an outage: it warns once per failed
    connection attempt of each pool (tens in a few seconds). The first warning passes, the rest
    are counted, and the first connection made again is logged with that count; the pool's INFO
    chatter is dropped."""

    RECOVERED = "adding new connection to the pool"

    def __init__(self) -> None:
        super().__init__()
        self.suppressed: int | None = None  # None: no outage going on

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            if self.suppressed is None:
                self.suppressed = 0
                record.msg = f"{record.msg} (the database is unreachable; the pool's further errors are " \
                             "counted, not logged, until a connection succeeds)"
                return True
            self.suppressed += 1
            return False
        if self.suppressed is not None and record.getMessage() == self.RECOVERED:
            record.msg, record.args = "the database is reachable again (%d more pool errors not logged)", \
                (self.suppressed,)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            self.suppressed = None
            return True
        return False


def configure_logging(level: str) -> None:
    """The pgreco loggers at the level given (RECO_LOG_LEVEL); a stderr handler when nothing
    else (uvicorn configures only its own loggers) would print them. psycopg_pool's logger goes
    through the same handler, once per outage (PoolOutageLog)."""
    logger = logging.getLogger("pgreco")
    logger.setLevel(level.upper())
    pool = logging.getLogger("psycopg.pool")
    pool.setLevel(logging.INFO)  # the filter needs the INFO record of a new connection
    if not any(isinstance(f, PoolOutageLog) for f in pool.filters):
        pool.addFilter(PoolOutageLog())
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        if not pool.handlers:
            pool.addHandler(handler)
            pool.propagate = False


def request_id(scope) -> str:
    """The request's id: the client's X-Request-ID when it is visible ASCII of at most 200
    characters, else a new one, set on the request so that the handlers read the same."""
    headers = scope["headers"]
    for name, value in headers:
        if name == b"x-request-id":
            if _REQUEST_ID.fullmatch(value):
                return value.decode()
            headers = [(n, v) for n, v in headers if n != b"x-request-id"]
            break
    rid = uuid.uuid4().hex
    scope["headers"] = [*headers, (b"x-request-id", rid.encode())]
    return rid


class MetricsMiddleware:
    """Pure ASGI (no per-request task), around everything: the request id (X-Request-ID, in and
    out), the request counted by route template and status, its latency, and one log line."""

    def __init__(self, app, fastapi_app=None) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = request_id(scope)
        scope["reco.request_id"] = rid
        status = 500

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or ())
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    message["headers"] = [*headers, (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = self.route(scope, status)
            elapsed = time.perf_counter() - start
            REQUESTS.labels(path, scope["method"], str(status)).inc()
            LATENCY.labels(path).observe(elapsed)
            level = logging.WARNING if status >= 500 else logging.INFO
            if log.isEnabledFor(level):
                log.log(level, "%s %s %d %.1fms request_id=%s", scope["method"], path, status, elapsed * 1000, rid)

    def route(self, scope, status: int) -> str:
        """The route template: from the routing (FastAPI's routes say), else (a plain Starlette
        route or mount, or an answer given before the routing, such as 413) the first route of
        the app whose template matches the path, else 'unmatched' (404: no route)."""
        route = scope.get("route")
        path = getattr(route, "path", None)
        if path:
            return path
        if status != 404 and self.fastapi_app is not None:
            for regex, template, prefix in self._templates():
                if regex.match(scope["path"]) if prefix else regex.fullmatch(scope["path"]):
                    return template
        return "unmatched"

    def _templates(self) -> list[tuple[re.Pattern, str, bool]]:
        routes = self.fastapi_app.routes
        if self._templates_of is not routes or self._templates_count != len(routes):
            self._templates_cache = route_templates(self.fastapi_app)
            self._templates_of, self._templates_count = routes, len(routes)
        return self._templates_cache

    _templates_of = None
    _templates_count = -1
    _templates_cache: list = []


def route_templates(app) -> list[tuple[re.Pattern, str, bool]]:
    """Every route of the app: (regex, template, is a mount), included routers flattened (FastAPI
    0.12x lists their routes; newer versions list the routers, iter_route_contexts opens them)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is flat
        entries = [(r, getattr(r, "path", None)) for r in app.routes]
    else:
        entries = [(c.original_route, c.path) for c in iter_route_contexts(app.routes)]
    out = []
    for route, path in entries:
        if not path:
            continue
        if isinstance(route, Mount):
            out.append((re.compile(re.escape(path.rstrip("/")) + "(/|$)"), path, True))
        else:
            out.append((compile_path(path)[0], path, False))
    return out


def route_paths(app) -> list[str]:
    """The templates of every route of the app (for /: is there a console?)."""
    return [template for _, template, _ in route_templates(app)]
