"""The production transport (aiohttp) against real sockets on loopback: the same failures the
httpx MockTransport scripts in the other tests, produced for real, map to the same outcomes."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from opentelemetry import context, propagate

from emporium_events import correlation
from gateway.adapters.upstream import AiohttpTransport, Upstreams, UpstreamUnavailable

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    """A bare HTTP/1.1 server: ``answer`` (200 JSON naming the port), ``drop`` (reads the request,
    closes without a word) or ``hang`` (reads it, never answers)."""

    mode: str = "answer"
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                first, *lines = head.decode("latin-1").split("\r\n")[:-2]
                method, target, _ = first.split(" ")
                headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.seen.append(Seen(method, target, headers, body))
                if self.mode == "drop":
                    break
                if self.mode == "hang":
                    await asyncio.sleep(3600)
                payload = json.dumps({"port": self.port}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    """Two servers on loopback ports; the test sets their modes."""
    started: list[asyncio.Server] = []
    made: list[Server] = []
    for _ in range(2):
        server = Server()
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        server.port = listening.sockets[0].getsockname()[1]
        started.append(listening)
        made.append(server)
    yield made
    for listening in started:
        listening.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def upstreams_to() -> AsyncIterator[object]:
    made: list[Upstreams] = []

    def make(*ports: int, timeout: float = 5.0) -> Upstreams:
        transport = AiohttpTransport(timeout=timeout, max_connections=10)
        upstreams = Upstreams({"orders": transport}, {"orders": ",".join(url(p) for p in ports)})
        made.append(upstreams)
        return upstreams

    yield make
    for upstreams in made:
        await upstreams.aclose()


async def test_a_call_carries_the_body_query_request_id_and_trace_context(servers, upstreams_to) -> None:
    orders = upstreams_to(servers[0].port)
    token = correlation.request_id.set("req-42")
    caller = context.attach(propagate.extract({"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"}))
    try:
        response = await orders.request(
            "orders",
            "POST",
            "/orders",
            params=[("page", 2), ("ids", "a,b")],
            content=b'{"items": []}',
            headers={"X-User-Id": "u-1"},
        )
    finally:
        context.detach(caller)
        correlation.request_id.reset(token)

    assert response.status_code == 200 and response.json() == {"port": servers[0].port}
    assert response.headers["Content-Type"] == "application/json"  # looked up case-insensitively
    [seen] = servers[0].seen
    assert seen.target.startswith("/orders?page=2&ids=a")
    assert seen.body == b'{"items": []}'
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["x-request-id"] == "req-42" and seen.headers["x-user-id"] == "u-1"
    assert seen.headers["traceparent"].startswith(f"00-{TRACE_ID}-")  # the caller's trace goes on


async def test_a_post_to_a_replica_that_refuses_the_connection_goes_to_the_next_one(
    servers, upstreams_to
) -> None:
    orders = upstreams_to(closed_port(), servers[0].port)

    answers = [await orders.request("orders", "POST", "/orders", json={}) for _ in range(2)]

    assert [a.json()["port"] for a in answers] == [servers[0].port] * 2
    assert len(servers[0].seen) == 2


async def test_a_get_whose_connection_is_dropped_is_tried_on_the_next_replica_and_a_post_is_not(
    servers, upstreams_to
) -> None:
    servers[0].mode = "drop"
    orders = upstreams_to(servers[0].port, servers[1].port)

    answered = await orders.request("orders", "GET", "/orders/1")
    assert answered.json()["port"] == servers[1].port

    orders = upstreams_to(servers[0].port, servers[1].port)
    with pytest.raises(UpstreamUnavailable):
        await orders.request("orders", "POST", "/orders", json={})
    # aiohttp itself resends an idempotent request once on a dead connection, so the GET may have
    # reached the first replica twice; the POST reached it once and was not sent again.
    assert [s.method for s in servers[0].seen if s.method == "POST"] == ["POST"]
    assert [s.method for s in servers[1].seen] == ["GET"]


async def test_a_service_that_does_not_answer_in_time_is_unavailable_without_a_retry(
    servers, upstreams_to
) -> None:
    servers[0].mode = "hang"
    orders = upstreams_to(servers[0].port, servers[1].port, timeout=0.2)

    with pytest.raises(UpstreamUnavailable, match="timed out"):
        await orders.request("orders", "GET", "/orders/1")
    assert len(servers[0].seen) == 1 and servers[1].seen == []


async def test_a_service_is_ready_while_one_replica_answers_its_readyz(servers, upstreams_to) -> None:
    assert await upstreams_to(closed_port(), servers[0].port).ready(timeout=1) == {"orders": True}
    assert await upstreams_to(closed_port()).ready(timeout=1) == {"orders": False}
    servers[1].mode = "hang"
    assert await upstreams_to(servers[1].port).ready(timeout=0.2) == {"orders": False}
