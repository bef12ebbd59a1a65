"""The one shared HTTP client to the five services: timeouts, one retry for GETs, trace context.

An upstream that cannot be reached or does not answer in time raises ``UpstreamUnavailable``
(mapped to 503 with ``Retry-After``). Only GETs are retried, once, and only on connection-level
failures, never on timeouts: a second wait would double the latency the caller already paid.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from opentelemetry import propagate, trace
from prometheus_client import Histogram

from emporium_events import correlation

log = logging.getLogger(__name__)

_tracer = trace.get_tracer("emporium.gateway.upstream")

UPSTREAM_SECONDS = Histogram(
    "emporium_gateway_upstream_request_duration_seconds",
    "Calls from the gateway to the services, by service, method and status (or 'unavailable').",
    ["service", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

# Failures where the request surely never reached the service, or the pooled connection died:
# safe to repeat for an idempotent method.
_RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class UpstreamUnavailable(Exception):
    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"the {service} service is unavailable ({reason}); try again shortly")
        self.service = service


def make_http_client(
    *, timeout: float, max_connections: int, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections // 2,
            keepalive_expiry=30,
        ),
        follow_redirects=False,
    )


class Upstreams:
    """One connection pool per service: httpcore scans every pooled connection on each request,
    so one big shared pool made that scan the gateway's largest cost under load
    (bench/results/profile)."""

    def __init__(self, clients: Mapping[str, httpx.AsyncClient], base_urls: Mapping[str, str]) -> None:
        self._clients = dict(clients)
        self._base_urls = {name: url.rstrip("/") for name, url in base_urls.items()}

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    @property
    def services(self) -> list[str]:
        return list(self._base_urls)

    async def request(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        retry: bool | None = None,
    ) -> httpx.Response:
        url = self._base_urls[service] + path
        attempts = 2 if (method == "GET" if retry is None else retry) else 1
        started = time.perf_counter()
        status = "unavailable"
        with _tracer.start_as_current_span(
            method,
            kind=trace.SpanKind.CLIENT,
            attributes={
                "http.request.method": method,
                "server.address": urlsplit(url).hostname or "",
                "url.full": url,
                "peer.service": service,
            },
        ) as span:
            outgoing = dict(headers or {})
            propagate.inject(outgoing)  # W3C traceparent of this client span
            if (request_id := correlation.request_id.get()) is not None:
                outgoing["X-Request-ID"] = request_id
            try:
                for attempt in range(1, attempts + 1):
                    try:
                        response = await self._clients[service].request(
                            method,
                            url,
                            params=params,
                            json=json,
                            headers=outgoing,
                            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
                        )
                        status = str(response.status_code)
                        span.set_attribute("http.response.status_code", response.status_code)
                        return response
                    except _RETRYABLE as exc:
                        if attempt == attempts:
                            raise UpstreamUnavailable(service, type(exc).__name__) from exc
                        log.info("%s %s %s failed with %r; retrying once", service, method, path, exc)
                    except httpx.TimeoutException as exc:
                        raise UpstreamUnavailable(service, "timed out") from exc
                    except httpx.TransportError as exc:
                        raise UpstreamUnavailable(service, type(exc).__name__) from exc
                raise AssertionError("unreachable")
            except UpstreamUnavailable as exc:
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                span.set_attribute("error.type", "unavailable")
                raise
            finally:
                UPSTREAM_SECONDS.labels(service, method, status).observe(time.perf_counter() - started)

    async def ready(self, timeout: float) -> dict[str, bool]:
        """Each service's ``/readyz``, concurrently; a slow or failing service is simply not ready."""

        async def one(service: str) -> bool:
            try:
                response = await self._clients[service].get(
                    self._base_urls[service] + "/readyz", timeout=timeout
                )
            except httpx.HTTPError:
                return False
            return response.status_code == 200

        results = await asyncio.gather(*(one(s) for s in self._base_urls))
        return dict(zip(self._base_urls, results, strict=True))
