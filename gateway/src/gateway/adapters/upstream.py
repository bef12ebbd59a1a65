"""The one shared HTTP client to the five services: timeouts, one retry for GETs, trace context,
and several replicas of a service taken in turn.

An upstream that cannot be reached or does not answer in time raises ``UpstreamUnavailable``
(mapped to 503 with ``Retry-After``). Only GETs are retried, once, and only on connection-level
failures, never on timeouts: a second wait would double the latency the caller already paid.

A service given as several base URLs (``GATEWAY_ORDERS_URL=http://a:8003,http://b:8013``; in
Kubernetes one Service URL does this instead) gets each request on the next replica in turn. A
replica that refuses the connection (``ConnectError``: it is down, the request surely never
reached it) is skipped for the next one, whatever the method, until each was tried once; the
other connection-level failures (the request may have arrived) move a GET on as before, and a
GET gets two tries even with one URL.
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
from emporium_kit.replicas import RoundRobin

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
    """One connection pool per service (shared by its replicas): httpcore scans every pooled
    connection on each request, so one big shared pool made that scan the gateway's largest cost
    under load (bench/results/profile)."""

    def __init__(self, clients: Mapping[str, httpx.AsyncClient], base_urls: Mapping[str, str]) -> None:
        """``base_urls``: per service, one base URL or several comma-separated (its replicas)."""
        self._clients = dict(clients)
        self._replicas = {name: RoundRobin(urls) for name, urls in base_urls.items()}

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    @property
    def services(self) -> list[str]:
        return list(self._replicas)

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
        replicas = self._replicas[service]
        first = replicas.take()
        url = replicas.url(first) + path
        idempotent = method == "GET" if retry is None else retry
        # Each replica once on a refused connection; an idempotent call at least twice.
        attempts = max(replicas.count, 2) if idempotent else replicas.count
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
                    if attempt > 1:
                        url = replicas.url(first, attempt - 1) + path
                        span.set_attribute("url.full", url)
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
                        never_sent = isinstance(exc, httpx.ConnectError)
                        if attempt == attempts or not (idempotent or never_sent):
                            raise UpstreamUnavailable(service, type(exc).__name__) from exc
                        log.info("%s %s %s failed with %r; trying again", service, method, url, exc)
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
        """Each service's ``/readyz`` (every replica's), concurrently; a slow or failing replica is
        simply not ready, and a service is ready while one of its replicas is (requests go
        around the others)."""

        async def one(service: str, base_url: str) -> bool:
            try:
                response = await self._clients[service].get(base_url + "/readyz", timeout=timeout)
            except httpx.HTTPError:
                return False
            return response.status_code == 200

        checks = [(s, url) for s, replicas in self._replicas.items() for url in replicas.urls]
        results = await asyncio.gather(*(one(s, url) for s, url in checks))
        ready = dict.fromkeys(self._replicas, False)
        for (service, _), ok in zip(checks, results, strict=True):
            ready[service] = ready[service] or ok
        return ready
