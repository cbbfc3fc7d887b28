"""Prometheus metrics: requests and latency per route, degraded answers, ingested events, pool
use. With several worker processes (``reco serve --workers N``) they are collected across
processes through PROMETHEUS_MULTIPROC_DIR, which `reco serve` sets up."""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401  (re-exported)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

REQUESTS = Counter("reco_http_requests_total", "HTTP requests", ["route", "method", "status"])
LATENCY = Histogram("reco_http_request_duration_seconds", "HTTP request duration", ["route"],
                    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
DEGRADED = Counter("reco_degraded_responses_total",
                   "answers from the last-known popular list (database slow or unreachable)", ["route"])
INGESTED = Counter("reco_ingest_events_total", "events received by POST /v1/events", ["result"])
POOL = Gauge("reco_db_pool_connections", "database pool connections", ["pool", "state"],
             multiprocess_mode="livesum")


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


class MetricsMiddleware:
    """Pure ASGI (no per-request task): counts every request by route template and status."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            REQUESTS.labels(path, scope["method"], str(status)).inc()
            LATENCY.labels(path).observe(time.perf_counter() - start)
