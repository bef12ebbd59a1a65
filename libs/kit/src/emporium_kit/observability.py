"""Tracing, request metrics and the /healthz, /readyz, /metrics endpoints."""

from __future__ import annotations

import functools
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Response
from fastapi.telemetry import TelemetryConfig
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emporium_events import correlation
from emporium_kit import logs
from emporium_kit.problems import problem

_configured = False


def configure(service: str, *, log_level: str = "INFO") -> None:
    """Logging and the OpenTelemetry SDK, once per process, from the standard ``OTEL_*`` variables.

    - ``OTEL_SDK_DISABLED=true``: no SDK at all (no spans, no trace context on the wire).
    - ``OTEL_SERVICE_NAME`` (default: the service's own name), ``OTEL_RESOURCE_ATTRIBUTES``.
    - ``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG``; default ``parentbased_traceidratio``
      with 1.0, so a sampled gateway request keeps its whole order sampled in every service.
    - ``OTEL_TRACES_EXPORTER``: ``otlp`` (OTLP over HTTP/protobuf, to ``OTEL_EXPORTER_OTLP_ENDPOINT``
      or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), ``console``, ``none``, or several, comma-separated.
      Default: ``otlp`` when an OTLP endpoint is set, else ``none`` (spans are still made, so trace
      context still flows through HTTP and Kafka). Batching follows ``OTEL_BSP_*``.
    """
    global _configured
    if _configured:
        return
    _configured = True
    logs.configure(service, level=log_level)
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    trace.set_tracer_provider(_tracer_provider(service))


def _tracer_provider(service: str) -> TracerProvider:
    env = os.environ
    resource = Resource.create({} if env.get("OTEL_SERVICE_NAME") else {"service.name": service})
    sampler = None if env.get("OTEL_TRACES_SAMPLER") else ParentBased(TraceIdRatioBased(1.0))
    provider = TracerProvider(resource=resource, sampler=sampler)  # None: the SDK reads the variables
    has_endpoint = bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    names = env.get("OTEL_TRACES_EXPORTER") or ("otlp" if has_endpoint else "none")
    for name in (n.strip().lower() for n in names.split(",")):
        if name == "otlp":
            # Imported only when used: it brings protobuf, which a process not exporting never needs.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name not in ("none", ""):
            logging.getLogger(__name__).warning("OTEL_TRACES_EXPORTER: unknown exporter %r ignored", name)
    return provider


# FastAPI's own OpenTelemetry support (0.165+) would add a second server span to every request and
# spans for each dependency and endpoint; `instrument` already makes the one server span (and the
# request metrics) in a single cheap pass, so FastAPI's is switched off wherever an app is built.
FASTAPI_TELEMETRY_OFF: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


@functools.cache
def _request_seconds() -> Histogram:
    """OpenTelemetry's HTTP server metric under its Prometheus name, labels and buckets
    (https://opentelemetry.io/docs/specs/semconv/http/http-metrics/#metric-httpserverrequestduration).
    One per process: a process is one service, and Prometheus adds ``job`` and ``instance``."""
    return Histogram(
        "http_server_request_duration_seconds",
        "Duration of HTTP server requests.",
        ["http_request_method", "http_route", "http_response_status_code"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10),
    )


# Any other method is recorded as "_OTHER" (semantic conventions), so a client cannot add series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


def instrument(app: FastAPI, service: str) -> None:
    """A server span (continuing the caller's trace) and a duration histogram per request."""
    app.add_middleware(
        _Observe, tracer=trace.get_tracer(f"emporium.{service}.http"), seconds=_request_seconds()
    )


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


class _Observe:
    """Plain ASGI middleware. Starlette's ``@app.middleware("http")`` runs every request through
    an extra task and memory streams: 16 % of the gateway's CPU samples were in that machinery
    alone under checkout load (bench/profile.py)."""

    def __init__(self, app: ASGIApp, *, tracer: trace.Tracer, seconds: Histogram) -> None:
        self._app = app
        self._tracer = tracer
        self._seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status = 500  # unless the app starts a response
        # The caller's X-Request-ID when it is a sane token, else a new one; echoed on the
        # response, quoted in problem bodies and logs, and forwarded by the gateway.
        request_id = carrier.get("x-request-id", "")
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        token = correlation.request_id.set(request_id)

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        with self._tracer.start_as_current_span(
            f"{method} {path}",
            context=propagate.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        ) as span:
            try:
                await self._app(scope, receive, observed_send)
            finally:
                span.set_attribute("http.response.status_code", status)
                route = getattr(scope.get("route"), "path", "")  # no route matched: none, as OTel says
                if route:  # semantic conventions: "{method} {route}", low cardinality
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                correlation.request_id.reset(token)
                known = method if method in _METHODS else "_OTHER"
                self._seconds.labels(known, route, str(status)).observe(time.perf_counter() - started)


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
