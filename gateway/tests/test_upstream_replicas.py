"""Several replicas of a service behind one setting: requests in turn, and around a replica
that is down (``adapters/upstream.py``), on an httpx MockTransport standing in for the replicas."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from gateway.adapters.upstream import HttpxTransport, Upstreams, UpstreamUnavailable
from gateway.config import GatewaySettings

A, B, C = "http://127.0.0.1:8003", "http://127.0.0.1:8013", "http://127.0.0.1:8023"


class Replicas:
    """Answers 200 with the replica's port; a replica in ``down`` refuses the connection and one
    in ``cut`` takes the request and drops the connection before answering."""

    def __init__(self) -> None:
        self.down: set[int] = set()
        self.cut: set[int] = set()
        self.seen: list[tuple[str, int]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        port = request.url.port or 80
        if port in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        self.seen.append((request.method, port))
        if port in self.cut:
            raise httpx.ReadError("connection reset by peer", request=request)
        return httpx.Response(200, json={"port": port})


def upstreams(replicas: Replicas, urls: str) -> Upstreams:
    return Upstreams({"orders": HttpxTransport(transport=httpx.MockTransport(replicas))}, {"orders": urls})


@pytest.fixture
def replicas() -> Replicas:
    return Replicas()


async def test_requests_to_a_service_with_two_replicas_alternate_between_them(replicas) -> None:
    orders = upstreams(replicas, f"{A},{B}")

    answered = [(await orders.request("orders", m, "/orders")).json()["port"] for m in ("GET", "POST") * 2]

    assert answered == [8003, 8013, 8003, 8013]


async def test_a_post_to_a_replica_that_refuses_the_connection_goes_to_the_next_one_once(replicas) -> None:
    replicas.down = {8003}
    orders = upstreams(replicas, f"{A},{B}")

    responses = [await orders.request("orders", "POST", "/orders", json={}) for _ in range(4)]

    assert [r.json()["port"] for r in responses] == [8013] * 4
    assert replicas.seen == [("POST", 8013)] * 4  # each order reached a service exactly once


async def test_a_post_whose_connection_dies_after_sending_is_not_sent_again(replicas) -> None:
    replicas.cut = {8003}
    orders = upstreams(replicas, f"{A},{B}")

    with pytest.raises(UpstreamUnavailable):
        await orders.request("orders", "POST", "/orders", json={})
    assert replicas.seen == [("POST", 8003)]


async def test_a_get_whose_connection_dies_is_tried_on_the_next_replica(replicas) -> None:
    replicas.cut = {8003}
    orders = upstreams(replicas, f"{A},{B}")

    response = await orders.request("orders", "GET", "/orders")

    assert response.json()["port"] == 8013
    assert replicas.seen == [("GET", 8003), ("GET", 8013)]


async def test_when_every_replica_refuses_each_is_tried_once_and_the_service_is_unavailable(replicas) -> None:
    replicas.down = {8003, 8013, 8023}
    calls: list[int] = []

    def counting(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.port or 80)
        return replicas(request)

    transport = HttpxTransport(transport=httpx.MockTransport(counting))
    orders = Upstreams({"orders": transport}, {"orders": f"{A},{B},{C}"})

    with pytest.raises(UpstreamUnavailable):
        await orders.request("orders", "POST", "/orders", json={})
    assert sorted(calls) == [8003, 8013, 8023]


async def test_with_one_url_a_get_is_retried_once_and_a_post_never_as_before(replicas) -> None:
    replicas.cut = {8003}
    orders = upstreams(replicas, A)

    with pytest.raises(UpstreamUnavailable):
        await orders.request("orders", "GET", "/orders")
    with pytest.raises(UpstreamUnavailable):
        await orders.request("orders", "POST", "/orders", json={})
    assert replicas.seen == [("GET", 8003), ("GET", 8003), ("POST", 8003)]


async def test_a_service_is_ready_while_one_of_its_replicas_is(replicas) -> None:
    replicas.down = {8003}
    assert await upstreams(replicas, f"{A},{B}").ready(timeout=1) == {"orders": True}
    replicas.down = {8003, 8013}
    assert await upstreams(replicas, f"{A},{B}").ready(timeout=1) == {"orders": False}


def test_the_settings_take_a_comma_separated_list_per_service_and_refuse_an_empty_entry() -> None:
    settings = GatewaySettings(orders_url=f"{A}/, {B}")
    assert settings.upstream_urls()["orders"] == f"{A},{B}"
    with pytest.raises(ValidationError):
        GatewaySettings(orders_url=f"{A},")
