"""The order saga through the gateway, on the real Kafka broker and PostgreSQL databases."""

from __future__ import annotations

import asyncio
import re

import httpx
from conftest_helpers import money_moved


async def test_an_order_paid_by_a_good_card_is_confirmed_deducts_its_stock_and_notifies_the_customer(
    api, stack
):
    product = await api.product(stock=3, price_cents=2500)
    _, token = await api.customer()
    accepted = await api.place(token, product, 2)
    assert accepted["status"] == "PENDING" and accepted["total_cents"] == 5000

    order = await api.settled(token, accepted["id"])
    assert order["status"] == "CONFIRMED" and order["cancel_reason"] is None
    assert order["history"][0]["status"] == "PENDING"
    assert order["history"][-1]["status"] == "CONFIRMED"
    assert await api.stock_at_rest(product) == {
        "product_id": product,
        "on_hand": 1,
        "reserved": 0,
        "available": 1,
    }

    for _ in range(100):
        notes = (await api.client.get("/api/v1/notifications", headers=api.auth(token))).json()
        if notes:
            break
        await asyncio.sleep(0.05)
    assert [(n["type"], n["order_id"]) for n in notes] == [("order_confirmed", accepted["id"])]
    assert (await api.client.get(f"/api/v1/products/{product}")).json()["available"] == 1


async def test_a_declined_card_cancels_the_order_and_releases_its_stock(api, db):
    product = await api.product(stock=3)
    _, token = await api.customer()
    accepted = await api.place(token, product, 2, payment_token="tok_chargeDeclined")
    order = await api.settled(token, accepted["id"])
    assert (order["status"], order["cancel_reason"]) == ("CANCELLED", "PAYMENT_DECLINED")
    level = await api.stock_at_rest(product)
    assert (level["on_hand"], level["reserved"], level["available"]) == (3, 0, 3)
    captured = db(
        "payments",
        "SELECT count(*) FROM payments WHERE order_id = :o AND status = 'CAPTURED'",
        o=accepted["id"],
    )
    assert captured[0][0] == 0


async def test_an_order_for_more_than_is_in_stock_is_cancelled_and_nothing_is_charged(api, db):
    product = await api.product(stock=3)
    _, token = await api.customer()
    accepted = await api.place(token, product, 5)
    order = await api.settled(token, accepted["id"])
    assert (order["status"], order["cancel_reason"]) == ("CANCELLED", "OUT_OF_STOCK")
    assert (await api.stock_at_rest(product))["available"] == 3
    await asyncio.sleep(0.5)  # give payments time to (wrongly) charge, had it wanted to
    assert money_moved(db, accepted["id"]) == {}


async def test_twenty_concurrent_orders_for_five_units_give_exactly_five_confirmations(api, db):
    product = await api.product(stock=5)
    customers = [await api.customer() for _ in range(20)]
    accepted = await asyncio.gather(*(api.place(token, product, 1) for _, token in customers))
    finals = await asyncio.gather(
        *(api.settled(token, a["id"]) for (_, token), a in zip(customers, accepted, strict=True))
    )
    statuses = sorted(f["status"] for f in finals)
    assert statuses.count("CONFIRMED") == 5 and statuses.count("CANCELLED") == 15
    assert {f["cancel_reason"] for f in finals if f["status"] == "CANCELLED"} == {"OUT_OF_STOCK"}
    level = await api.stock_at_rest(product)
    assert (level["on_hand"], level["reserved"]) == (0, 0)
    captured = db(
        "payments",
        "SELECT count(*) FROM payments WHERE order_id = ANY(:ids) AND status = 'CAPTURED'",
        ids=[a["id"] for a in accepted],
    )
    assert captured[0][0] == 5


async def _consumed(stack, service: str, outcome: str) -> float:
    text = httpx.get(f"{stack.service_url(service)}/metrics").text
    total = 0.0
    for match in re.finditer(rf"emporium_{service}_events_consumed_total{{([^}}]*)}} ([0-9.e+]+)", text):
        if f'outcome="{outcome}"' in match.group(1):
            total += float(match.group(2))
    return total


async def test_redelivered_events_are_acknowledged_and_change_nothing(api, stack, db):
    product = await api.product(stock=4, price_cents=700)
    _, token = await api.customer()
    accepted = await api.place(token, product, 1)
    await api.settled(token, accepted["id"])
    await api.stock_at_rest(product)
    before_inventory = await _consumed(stack, "inventory", "duplicate")
    before_payments = await _consumed(stack, "payments", "duplicate")

    # As if every relay had crashed after Kafka's ack but before marking its rows sent:
    # the whole saga's events are published a second time.
    for service in ("orders", "inventory", "payments"):
        db(service, "UPDATE outbox SET sent_at = NULL WHERE key = :k", k=accepted["id"])

    for _ in range(200):
        if (
            await _consumed(stack, "inventory", "duplicate") >= before_inventory + 2
            and await _consumed(stack, "payments", "duplicate") >= before_payments + 2
        ):
            break
        await asyncio.sleep(0.05)
    assert await _consumed(stack, "inventory", "duplicate") >= before_inventory + 2
    assert await _consumed(stack, "payments", "duplicate") >= before_payments + 2

    level = await api.stock(product)
    assert (level["on_hand"], level["reserved"]) == (3, 0)
    order = (await api.order(token, accepted["id"])).json()
    assert order["status"] == "CONFIRMED"
    assert [h["status"] for h in order["history"]].count("CONFIRMED") == 1
    assert money_moved(db, accepted["id"]) == {"charge": 700}
    assert (
        db("notifications", "SELECT count(*) FROM notifications WHERE order_id = :o", o=accepted["id"])[0][0]
        == 1
    )


async def test_orders_price_from_its_copy_of_the_catalog_and_follow_a_price_change(api, db):
    product = await api.product(stock=10, price_cents=1500)
    _, token = await api.customer()
    for _ in range(100):  # orders keeps the catalog's prices from ProductCreated/ProductUpdated
        if db("orders", "SELECT price_cents FROM catalog_prices WHERE product_id = :p", p=product) == [
            (1500,)
        ]:
            break
        await asyncio.sleep(0.05)
    assert db("orders", "SELECT price_cents FROM catalog_prices WHERE product_id = :p", p=product) == [
        (1500,)
    ]
    assert (await api.place(token, product, 1))["total_cents"] == 1500

    r = await api.client.put(
        f"/api/v1/products/{product}",
        headers=api.auth(api.admin_token),
        json={
            "name": "Test lamp",
            "description": "e2e",
            "price_cents": 1200,
            "currency": "USD",
            "category": "test",
        },
    )
    assert r.status_code == 200, r.text
    for _ in range(100):
        if db("orders", "SELECT price_cents FROM catalog_prices WHERE product_id = :p", p=product) == [
            (1200,)
        ]:
            break
        await asyncio.sleep(0.05)
    assert (await api.place(token, product, 2))["total_cents"] == 2400
