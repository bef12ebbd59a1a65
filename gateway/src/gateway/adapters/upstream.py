"""The one shared HTTP client to the five services: timeouts, one retry for GETs, trace context,
and several replicas of a service taken in turn.

An upstream that cannot be reached or does not answer in time raises ``UpstreamUnavailable``
(mapped to 503 with ``Retry-After``). Only GETs are retried, once, and only on connection-level
failures, never on timeouts: a second wait would double the latency the caller already paid.

A service given as several base URLs (``GATEWAY_ORDERS_URL=http://a:8003,http://b:8013``; in
Kubernetes one Service URL does this instead) gets each request on the next replica in turn. A
replica that refuses the connection (``Refused``: it is down, the request surely never reached
it) is skipped for the next one, whatever the method, until each was tried once; the other
connection-level failures (``Dropped``: the request may have arrived) move a GET on as before,
and a GET gets two tries even with one URL.

The HTTP client itself sits behind ``Transport``: aiohttp's in production, httpx's for tests
(``httpx.MockTransport``) and as a fallback (``GATEWAY_UPSTREAM_CLIENT=httpx``). aiohttp was
chosen by measurement: on a relayed request it cost the gateway ~5x less CPU than httpx, whose
connection pool (httpcore, anyio) was over half of the gateway's samples
(bench/gateway_clients.py, bench/results/gateway-clients/).
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
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

Params = Mapping[str, Any] | list[tuple[str, Any]] | None

_JSON = "application/json"


class UpstreamUnavailable(Exception):
    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"the {service} service is unavailable ({reason}); try again shortly")
        self.service = service


class UpstreamResponse:
    """A service's whole answer: status, headers (looked up case-insensitively) and body."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        return jsonlib.loads(self.content)


# ---------------------------------------------------------------------------- the transport port


class TransportError(Exception):
    """A call that got no answer; ``reason`` names the client's own error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Refused(TransportError):
    """The connection was never made: the request surely did not reach the service."""


class Dropped(TransportError):
    """The connection died (or a pooled one was stale): the request may have arrived."""


class TimedOut(TransportError):
    """No connection or no answer in time."""


class Transport(Protocol):
    """One service's HTTP client: sends one request, reads the whole answer, raises a
    ``TransportError`` when there is none. Never retries by itself."""

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Params,
        headers: Mapping[str, str],
        content: bytes | None,
        timeout: float | None,
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class AiohttpTransport:
    """aiohttp's client: its HTTP parser and connection pool are C (or cheap Python).

    One exception to "never retries": aiohttp itself resends an idempotent request once when its
    connection dies (meant for a stale keep-alive connection), before ``Dropped`` is raised; so a
    GET can reach a replica that drops it twice. A POST is never resent.

    Timeouts as httpx had them: ``timeout`` to get a connection (pool wait included) and for
    each read, at most 2 s of it to connect. No cookie jar: a gateway must never carry one
    caller's cookies to the next. Built in the lifespan (it needs the running loop)."""

    def __init__(self, *, timeout: float, max_connections: int) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=timeout, sock_connect=min(timeout, 2.0), sock_read=timeout
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._default_timeout = self._session.timeout
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Params,
        headers: Mapping[str, str],
        content: bytes | None,
        timeout: float | None,
    ) -> UpstreamResponse:
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                data=content,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout(timeout),
            ) as response:
                return UpstreamResponse(response.status, response.headers, await response.read())
        except TimeoutError as exc:  # ServerTimeoutError, ConnectionTimeoutError, the pool wait
            raise TimedOut(type(exc).__name__) from exc
        except aiohttp.ClientConnectorError as exc:  # refused, unreachable, no such host
            raise Refused(type(exc).__name__) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            raise Dropped(type(exc).__name__) from exc
        except aiohttp.ClientError as exc:  # e.g. an answer that is not HTTP
            raise TransportError(type(exc).__name__) from exc

    def _timeout(self, seconds: float | None) -> aiohttp.ClientTimeout:
        if seconds is None:
            return self._default_timeout
        if (timeout := self._timeouts.get(seconds)) is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(
                total=None, connect=seconds, sock_read=seconds
            )
        return timeout

    async def aclose(self) -> None:
        await self._session.close()


class HttpxTransport:
    """httpx's client, over any httpx transport (tests give ``httpx.MockTransport``)."""

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections // 2,
                keepalive_expiry=30,
            ),
            follow_redirects=False,
        )

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Params,
        headers: Mapping[str, str],
        content: bytes | None,
        timeout: float | None,
    ) -> UpstreamResponse:
        try:
            response = await self._client.request(
                method,
                url,
                params=params,
                content=content,
                headers=headers,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.ConnectError as exc:
            raise Refused(type(exc).__name__) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise Dropped(type(exc).__name__) from exc
        except httpx.TimeoutException as exc:
            raise TimedOut(type(exc).__name__) from exc
        except httpx.TransportError as exc:
            raise TransportError(type(exc).__name__) from exc
        return UpstreamResponse(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        await self._client.aclose()


def make_transport(client: str, *, timeout: float, max_connections: int) -> Transport:
    if client == "httpx":
        return HttpxTransport(timeout=timeout, max_connections=max_connections)
    return AiohttpTransport(timeout=timeout, max_connections=max_connections)


# ---------------------------------------------------------------------------- the services


class Upstreams:
    """One transport, so one connection pool, per service (shared by its replicas): httpcore
    scanned every pooled connection on each request, so one big shared pool made that scan the
    gateway's largest cost under load (bench/results/profile)."""

    def __init__(self, transports: Mapping[str, Transport], base_urls: Mapping[str, str]) -> None:
        """``base_urls``: per service, one base URL or several comma-separated (its replicas)."""
        self._transports = dict(transports)
        self._replicas = {name: RoundRobin(urls) for name, urls in base_urls.items()}
        self._hosts = {
            url: urlsplit(url).hostname or "" for replicas in self._replicas.values() for url in replicas.urls
        }
        self._timers: dict[tuple[str, str, str], Any] = {}  # the histogram's children, looked up once

    async def aclose(self) -> None:
        for transport in self._transports.values():
            await transport.aclose()

    @property
    def services(self) -> list[str]:
        return list(self._replicas)

    async def request(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: Params = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        retry: bool | None = None,
    ) -> UpstreamResponse:
        """``json``: a body to serialise; ``content``: a JSON body already in bytes (a client's,
        relayed unchanged)."""
        replicas = self._replicas[service]
        first = replicas.take()
        base = replicas.url(first)
        url = base + path
        idempotent = method == "GET" if retry is None else retry
        # Each replica once on a refused connection; an idempotent call at least twice.
        attempts = max(replicas.count, 2) if idempotent else replicas.count
        started = time.perf_counter()
        status = "unavailable"
        outgoing = dict(headers or {})
        if json is not None:
            content = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        if content is not None:
            outgoing["Content-Type"] = _JSON
        with _tracer.start_as_current_span(
            method,
            kind=trace.SpanKind.CLIENT,
            attributes={
                "http.request.method": method,
                "server.address": self._hosts[base],
                "url.full": url,
                "peer.service": service,
            },
        ) as span:
            propagate.inject(outgoing)  # W3C traceparent of this client span
            if (request_id := correlation.request_id.get()) is not None:
                outgoing["X-Request-ID"] = request_id
            transport = self._transports[service]
            try:
                for attempt in range(1, attempts + 1):
                    if attempt > 1:
                        url = replicas.url(first, attempt - 1) + path
                        span.set_attribute("url.full", url)
                    try:
                        response = await transport.send(
                            method, url, params=params, headers=outgoing, content=content, timeout=timeout
                        )
                        status = str(response.status_code)
                        span.set_attribute("http.response.status_code", response.status_code)
                        return response
                    except (Refused, Dropped) as exc:
                        if attempt == attempts or not (idempotent or isinstance(exc, Refused)):
                            raise UpstreamUnavailable(service, exc.reason) from exc
                        log.info("%s %s %s failed with %s; trying again", service, method, url, exc.reason)
                    except TimedOut as exc:
                        raise UpstreamUnavailable(service, "timed out") from exc
                    except TransportError as exc:
                        raise UpstreamUnavailable(service, exc.reason) from exc
                raise AssertionError("unreachable")
            except UpstreamUnavailable as exc:
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                span.set_attribute("error.type", "unavailable")
                raise
            finally:
                self._timer(service, method, status).observe(time.perf_counter() - started)

    def _timer(self, service: str, method: str, status: str) -> Any:
        key = (service, method, status)
        if (timer := self._timers.get(key)) is None:
            timer = self._timers[key] = UPSTREAM_SECONDS.labels(service, method, status)
        return timer

    async def ready(self, timeout: float) -> dict[str, bool]:
        """Each service's ``/readyz`` (every replica's), concurrently; a slow or failing replica is
        simply not ready, and a service is ready while one of its replicas is (requests go
        around the others)."""

        async def one(service: str, base_url: str) -> bool:
            try:
                response = await self._transports[service].send(
                    "GET", base_url + "/readyz", params=None, headers={}, content=None, timeout=timeout
                )
            except TransportError:
                return False
            return response.status_code == 200

        checks = [(s, url) for s, replicas in self._replicas.items() for url in replicas.urls]
        results = await asyncio.gather(*(one(s, url) for s, url in checks))
        ready = dict.fromkeys(self._replicas, False)
        for (service, _), ok in zip(checks, results, strict=True):
            ready[service] = ready[service] or ok
        return ready
