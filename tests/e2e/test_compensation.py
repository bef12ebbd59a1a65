"""Cancellation, refunds, saga deadlines and idempotency keys, end to end."""

from __future__ import annotations

import asyncio
import signal
from uuid import uuid4

from conftest_helpers import money_moved


async def test_cancelling_a_confirmed_order_refunds_it_and_returns_its_stock(api, db):
    product = await api.product(stock=4, price_cents=1500)
    _, token = await api.customer()
    accepted = await api.place(token, product, 3)
    assert (await api.settled(token, accepted["id"]))["status"] == "CONFIRMED"
    assert (await api.stock_at_rest(product))["on_hand"] == 1

    r = await api.client.post(f"/api/v1/orders/{accepted['id']}/cancel", headers=api.auth(token))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["cancel_reason"]) == ("CANCELLED", "CUSTOMER_REQUEST")
    steps = await api.history(token, accepted["id"], "PAYMENT_REFUNDED", "STOCK_RELEASED")
    assert steps[:2] == ["PENDING", "STOCK_RESERVED"] and "CONFIRMED" in steps
    assert {"CANCELLED", "PAYMENT_REFUNDED", "STOCK_RELEASED"} <= set(steps)
    assert (await api.stock(product))["on_hand"] == 4
    assert money_moved(db, accepted["id"]) == {"charge": 4500, "refund": 4500}

    again = await api.client.post(f"/api/v1/orders/{accepted['id']}/cancel", headers=api.auth(token))
    assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")


async def test_only_the_owner_or_an_admin_may_cancel(api):
    product = await api.product(stock=2)
    _, owner = await api.customer()
    _, stranger = await api.customer()
    accepted = await api.place(owner, product, 1)
    r = await api.client.post(f"/api/v1/orders/{accepted['id']}/cancel", headers=api.auth(stranger))
    assert r.status_code == 404
    r = await api.client.post(f"/api/v1/orders/{accepted['id']}/cancel", headers=api.auth(api.admin_token))
    assert r.status_code == 200


async def test_a_retried_order_with_the_same_idempotency_key_returns_the_first_answer_and_creates_nothing(
    api, db
):
    product = await api.product(stock=5)
    _, token = await api.customer()
    key = f"checkout-{uuid4()}"
    first, second = await asyncio.gather(
        api.place(token, product, 2, key=key), api.place(token, product, 2, key=key)
    )
    assert first["id"] == second["id"]
    third = await api.place(token, product, 2, key=key)
    assert third == first
    mine = (await api.client.get("/api/v1/orders", headers=api.auth(token))).json()
    assert [o["id"] for o in mine] == [first["id"]]

    r = await api.client.post(
        "/api/v1/orders",
        headers=api.auth(token) | {"Idempotency-Key": key},
        json={"items": [{"product_id": product, "quantity": 3}], "payment_token": "tok_visa"},
    )
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["detail"]
    await api.settled(token, first["id"])
    assert db("payments", "SELECT provider_key, client_key FROM payments WHERE order_id = :o", o=first["id"])[
        0
    ] == (f"charge:{first['id']}", key)


async def test_a_saga_stuck_on_a_paused_payments_service_times_out_and_a_late_capture_is_refunded(
    api, stack, db
):
    product = await api.product(stock=3, price_cents=999)
    _, token = await api.customer()
    payments = stack.services["payments"]
    payments.signal(signal.SIGSTOP)
    try:
        accepted = await api.place(token, product, 1)
        order = await api.settled(token, accepted["id"], timeout=30)
        assert (order["status"], order["cancel_reason"]) == ("CANCELLED", "TIMEOUT")
        assert (await api.stock_at_rest(product))["available"] == 3
    finally:
        payments.signal(signal.SIGCONT)
    # Payments wakes up to OrderPlaced, StockReserved and OrderCancelled, in whatever order its
    # topics deliver them: it either never charges or charges and refunds. Never money kept.
    for _ in range(200):
        moved = money_moved(db, accepted["id"])
        if (
            moved.get("charge", 0) == moved.get("refund", 0)
            and db(
                "payments",
                "SELECT count(*) FROM payments WHERE order_id = :o AND status IN ('VOIDED', 'REFUNDED')",
                o=accepted["id"],
            )[0][0]
        ):
            break
        await asyncio.sleep(0.05)
    moved = money_moved(db, accepted["id"])
    assert moved.get("charge", 0) == moved.get("refund", 0)
    assert (await api.order(token, accepted["id"])).json()["status"] == "CANCELLED"
