"""One order is one trace: exported over OTLP to the real Jaeger and read back through its query API."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

SERVICES_OF_AN_ORDER = {"gateway", "orders", "inventory", "payments", "notifications"}


def _service_of(found: dict[str, Any]) -> dict[str, str]:
    return {span["spanID"]: found["processes"][span["processID"]]["serviceName"] for span in found["spans"]}


def _parents(found: dict[str, Any]) -> dict[str, list[str]]:
    return {
        span["spanID"]: [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
        for span in found["spans"]
    }


def _orphans(found: dict[str, Any]) -> list[tuple[str, str]]:
    """(service, operation) of each span whose parent is not (yet) in the trace."""
    service_of, parents = _service_of(found), _parents(found)
    return [
        (service_of[span["spanID"]], span["operationName"])
        for span in found["spans"]
        if any(p not in service_of for p in parents[span["spanID"]])
    ]


async def _whole_trace(
    stack, trace_id: str, *, operation: str, timeout: float = 30.0
) -> dict[str, Any] | None:
    """The trace once it has spans of every service of an order, one named ``operation``, and
    no span whose parent is missing (six processes export their spans in their own batches)."""
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, Any] | None = await asyncio.to_thread(stack.jaeger.trace, trace_id)
        if found is not None:
            names = {span["operationName"] for span in found["spans"]}
            if SERVICES_OF_AN_ORDER <= set(_service_of(found).values()) and operation in names:
                if not _orphans(found):
                    return found
        if time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.25)


async def test_an_order_is_one_trace_from_the_gateway_through_every_service_to_the_sent_mail(stack, api):
    if stack.jaeger is None:
        pytest.skip("no Jaeger here: the bootstrap builds it only where a Go toolchain is installed")
    product = await api.product(stock=3)
    _, token = await api.customer()
    accepted = await api.place(token, product, 1)
    order = await api.settled(token, accepted["id"])
    assert order["status"] == "CONFIRMED"
    trace_id = order["trace_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id), trace_id

    found = await _whole_trace(stack, trace_id, operation="send email")

    assert found is not None, f"Jaeger has no trace {trace_id}"
    spans, service_of, parents = found["spans"], _service_of(found), _parents(found)
    assert SERVICES_OF_AN_ORDER <= set(service_of.values()), sorted(set(service_of.values()))
    assert "send email" in {s["operationName"] for s in spans if service_of[s["spanID"]] == "notifications"}
    # Whole: one root (the gateway's request), every other span a child of a span in this trace.
    roots = [(service_of[s["spanID"]], s["operationName"]) for s in spans if not parents[s["spanID"]]]
    assert roots == [("gateway", "POST /api/v1/orders")]
    assert not _orphans(found), f"spans whose parent is not in the trace: {_orphans(found)}"

    def kinds(service: str) -> set[str]:
        return {
            tag["value"]
            for span in spans
            if service_of[span["spanID"]] == service
            for tag in span["tags"]
            if tag["key"] == "span.kind"
        }

    # Each hop through Kafka: a relay's producer span, then a consumer's processing span.
    for service in ("inventory", "payments", "notifications"):
        assert "consumer" in kinds(service), (service, kinds(service))
    for service in ("orders", "inventory", "payments"):
        assert "producer" in kinds(service), (service, kinds(service))
    messaging = {
        s["operationName"]
        for s in spans
        if any(t["key"] == "messaging.system" and t["value"] == "kafka" for t in s["tags"])
    }
    assert {"orders.events publish", "orders.events process", "inventory.events process"} <= messaging
