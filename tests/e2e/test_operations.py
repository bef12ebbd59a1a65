"""What operators use: dead letters they can see and replay, the outbox backlog, readiness."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from aiokafka import AIOKafkaProducer

from emporium_events import topics


async def _letters_for(api, key: str) -> dict[str, list[dict]]:
    listed = (await api.client.get("/api/v1/admin/dead-letters", headers=api.auth(api.admin_token))).json()
    return {
        service: [d for d in letters if d["key"] == key]
        for service, letters in listed.items()
        if isinstance(letters, list)
    }


async def test_a_poison_message_is_dead_lettered_by_every_consumer_and_can_be_listed_and_replayed(api, stack):
    key = f"poison-{uuid4()}"
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.ORDERS, key=key.encode(), value=b"\x00 definitely not an envelope"
        )
    finally:
        await producer.stop()

    for _ in range(200):
        found = await _letters_for(api, key)
        if all(found.get(s) for s in ("inventory", "payments", "notifications")):
            break
        await asyncio.sleep(0.05)
    assert {s for s, letters in found.items() if letters} == {"inventory", "payments", "notifications"}
    letter = found["inventory"][0]
    assert letter["topic"] == topics.ORDERS and letter["error_type"] == "UndecodableMessage"
    assert letter["attempts"] == 1 and letter["offset"] >= 0

    r = await api.client.post(
        f"/api/v1/admin/dead-letters/inventory/{letter['id']}/replay", headers=api.auth(api.admin_token)
    )
    assert r.status_code == 200 and r.json()["replayed"] == [letter["id"]]
    # Still poison, so it comes back as a new dead letter for each consumer; the replayed one is gone.
    for _ in range(200):
        again = await _letters_for(api, key)
        if len(again["inventory"]) == 1 and again["inventory"][0]["id"] != letter["id"]:
            break
        await asyncio.sleep(0.05)
    assert len(again["inventory"]) == 1 and again["inventory"][0]["id"] != letter["id"]

    customer = await api.customer()
    r = await api.client.get("/api/v1/admin/dead-letters", headers=api.auth(customer[1]))
    assert r.status_code == 403


async def test_the_outbox_backlog_of_every_service_drains_to_zero(api):
    for _ in range(100):
        backlog = (await api.client.get("/api/v1/admin/outbox", headers=api.auth(api.admin_token))).json()
        if all(b.get("unsent") == 0 for b in backlog.values()):
            break
        await asyncio.sleep(0.1)
    assert set(backlog) == {"catalog", "inventory", "orders", "payments", "notifications"}
    assert all(b["unsent"] == 0 for b in backlog.values()), backlog


async def test_with_a_service_down_its_routes_answer_503_and_everything_else_keeps_working(api, stack):
    product = await api.product(stock=2)
    _, token = await api.customer()
    notifications = stack.services["notifications"]
    await asyncio.to_thread(notifications.terminate)
    try:
        r = await api.client.get("/api/v1/notifications", headers=api.auth(token))
        assert r.status_code == 503 and r.headers["retry-after"]
        assert r.headers["content-type"].startswith("application/problem+json")
        assert (await api.client.get("/readyz")).status_code == 503
        assert (await api.client.get(f"/api/v1/products/{product}")).json()["available"] == 2
        accepted = await api.place(token, product, 1)
        assert (await api.settled(token, accepted["id"]))["status"] == "CONFIRMED"
    finally:
        await asyncio.to_thread(notifications.restart, wait=True, timeout=90)
    for _ in range(100):  # the notification is written once the service is back
        if (await api.client.get("/api/v1/notifications", headers=api.auth(token))).json():
            break
        await asyncio.sleep(0.1)
    assert [
        n["order_id"] for n in (await api.client.get("/api/v1/notifications", headers=api.auth(token))).json()
    ] == [accepted["id"]]
