"""Every running process's /metrics: well-formed for Prometheus (``promtool check metrics``),
and the saga's metrics move when an order goes through."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from uuid import uuid4

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    return response.text


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def test_every_service_and_the_gateway_serve_metrics_that_promtool_finds_clean(api, stack):
    _, token = await api.customer()
    await api.settled(token, (await api.place(token, await api.product(stock=1), 1))["id"])
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: `make bootstrap` installs it (Debian's prometheus)")
    for name in stack.names:
        url = stack.gateway_url if name == "gateway" else stack.service_url(name)
        text = scrape(url)
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )
        assert (checked.returncode, checked.stdout + checked.stderr) == (0, ""), name
        assert "http_server_request_duration_seconds_bucket" in text, name


async def test_an_order_counts_in_saga_outcomes_and_completion_time_and_a_repeated_key_as_a_replay(
    api, stack
):
    orders = stack.service_url("orders")
    product = await api.product(stock=2)
    _, token = await api.customer()
    before = scrape(orders)
    key = f"k-{uuid4()}"

    order = await api.place(token, product, 1, key=key)
    assert (await api.settled(token, order["id"]))["status"] == "CONFIRMED"
    again = await api.place(token, product, 1, key=key)
    assert again["id"] == order["id"]

    after = scrape(orders)
    confirmed = "emporium_orders_saga_outcomes_total"
    assert value(after, confirmed, outcome="confirmed") >= value(before, confirmed, outcome="confirmed") + 1
    timed = "emporium_orders_saga_completion_seconds_count"
    assert value(after, timed) >= value(before, timed) + 1
    replays = "emporium_orders_idempotent_replays_total"
    assert value(after, replays) == value(before, replays) + 1


async def test_each_step_of_the_saga_funnel_counts_its_event_by_type_where_it_is_published_and_consumed(
    api, stack
):
    steps = {  # event type -> (who publishes it, who consumes it)
        "orders.OrderPlaced": ("orders", "inventory"),
        "inventory.StockReserved": ("inventory", "payments"),
        "payments.PaymentCaptured": ("payments", "orders"),
        "orders.OrderConfirmed": ("orders", "notifications"),
    }
    services = {s for pair in steps.values() for s in pair}
    before = {s: scrape(stack.service_url(s)) for s in services}
    _, token = await api.customer()
    order = await api.place(token, await api.product(stock=1), 1)
    assert (await api.settled(token, order["id"]))["status"] == "CONFIRMED"
    await asyncio.sleep(1.0)  # notifications consumes OrderConfirmed after orders has answered

    after = {s: scrape(stack.service_url(s)) for s in services}
    for event_type, (producer, consumer) in steps.items():
        published = f"emporium_{producer}_events_published_total"
        consumed = f"emporium_{consumer}_events_consumed_total"
        assert value(after[producer], published, event_type=event_type) >= (
            value(before[producer], published, event_type=event_type) + 1
        ), event_type
        assert value(after[consumer], consumed, event_type=event_type, outcome="handled") >= (
            value(before[consumer], consumed, event_type=event_type, outcome="handled") + 1
        ), event_type


async def test_every_consumer_reports_its_lag_per_partition_and_is_caught_up_at_rest(api, stack):
    _, token = await api.customer()
    await api.settled(token, (await api.place(token, await api.product(stock=1), 1))["id"])
    for name in ("inventory", "payments", "orders", "notifications"):
        deadline = time.monotonic() + 15
        while True:
            lags = [
                sample
                for family in text_string_to_metric_families(scrape(stack.service_url(name)))
                for sample in family.samples
                if sample.name == f"emporium_{name}_consumer_lag_messages"
            ]
            assert lags, f"{name} reports no consumer lag"
            assert {"group", "topic", "partition"} <= lags[0].labels.keys()
            if all(sample.value == 0 for sample in lags) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert [s.value for s in lags] == [0] * len(lags), f"{name} is still behind at rest: {lags}"
