"""Tracing, request metrics and the /healthz, /readyz, /metrics endpoints."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest

from emporium_kit.problems import problem

_configured = False


def configure(service: str, *, log_level: str = "INFO") -> None:
    """Logging and the OpenTelemetry SDK, once per process.

    Spans are exported to stdout when ``EMPORIUM_TRACE_CONSOLE=1``; otherwise they are still
    created, so ``traceparent`` flows through HTTP and Kafka, and any OTLP exporter can be
    added by the deployment.
    """
    global _configured
    if _configured:
        return
    _configured = True
    logging.basicConfig(
        level=log_level, stream=sys.stdout, format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if os.environ.get("EMPORIUM_TRACE_CONSOLE") == "1":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


_REQUEST_SECONDS: dict[str, Histogram] = {}


def instrument(app: FastAPI, service: str) -> None:
    if service not in _REQUEST_SECONDS:
        _REQUEST_SECONDS[service] = Histogram(
            f"emporium_{service}_http_request_duration_seconds",
            "HTTP requests served, by route and status.",
            ["method", "route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
    seconds = _REQUEST_SECONDS[service]
    tracer = trace.get_tracer(f"emporium.{service}.http")

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        ctx = propagate.extract(dict(request.headers))
        with tracer.start_as_current_span(
            f"{request.method} {request.url.path}",
            context=ctx,
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": request.method, "url.path": request.url.path},
        ) as span:
            response = await call_next(request)
            span.set_attribute("http.response.status_code", response.status_code)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        seconds.labels(request.method, path, str(response.status_code)).observe(time.perf_counter() - started)
        return response


def add_health_routes(app: FastAPI, ready: Callable[[], Awaitable[dict[str, bool]]]) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        checks = await ready()
        if all(checks.values()):
            return Response('{"status":"ready"}', media_type="application/json")
        failing = ", ".join(name for name, ok in checks.items() if not ok)
        return problem(503, f"not ready: {failing}", checks=checks)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
