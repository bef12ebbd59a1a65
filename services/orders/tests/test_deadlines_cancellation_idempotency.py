from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from orders_fakes import FakeOrdersUoW, FakePriceList, deliver

from emporium_events.contracts import PaymentCaptured, StockReserved
from emporium_events.envelope import Envelope
from orders.adapters.catalog import PricedProduct
from orders.domain.commands import CancelOrder, ExpireOverdue, IdempotencyKey, PlaceOrder, RequestedLine
from orders.domain.model import IdempotencyKeyReused, OrderAlreadyCancelled, OrderNotFound, OrderStatus
from orders.service_layer import handlers

ENV = Envelope(event_type="x", version=1, producer="t", aggregate_id="a", payload={})
MUG = PricedProduct(product_id=uuid4(), sku="MUG", name="Mug", price_cents=1000, currency="USD")
CATALOG = FakePriceList(MUG)


def render(order):
    return {"id": str(order.id), "status": order.status.value}


def command(customer=None, key=None, quantity=1):
    return PlaceOrder(
        order_id=uuid4(),
        customer_id=customer or uuid4(),
        customer_email=None,
        payment_token="tok_visa",
        lines=(RequestedLine(product_id=MUG.product_id, quantity=quantity),),
        idempotency=IdempotencyKey(key=key, request_hash=f"q{quantity}") if key else None,
    )


async def place(uow, cmd, timeout=timedelta(seconds=30)):
    return await handlers.place_order(cmd, uow, CATALOG, saga_timeout=timeout, render=render)


def captured(order_id):
    return PaymentCaptured(order_id=order_id, payment_id=uuid4(), amount_cents=1000, currency="USD")


async def test_an_order_whose_saga_passes_its_deadline_is_cancelled_as_timeout():
    uow = FakeOrdersUoW()
    cmd = command()
    await place(uow, cmd, timeout=timedelta(seconds=-1))
    assert await handlers.expire_overdue(ExpireOverdue(), uow) == 1
    order = uow.orders.rows[cmd.order_id]
    assert (order.status, order.cancel_reason) == (OrderStatus.CANCELLED, "TIMEOUT")
    assert uow.published_types() == ["OrderPlaced", "OrderCancelled"]
    assert await handlers.expire_overdue(ExpireOverdue(), uow) == 0


async def test_an_order_within_its_deadline_is_left_alone():
    uow = FakeOrdersUoW()
    await place(uow, command())
    assert await handlers.expire_overdue(ExpireOverdue(), uow) == 0


async def test_a_payment_captured_after_the_deadline_cancels_instead_of_confirming():
    uow = FakeOrdersUoW()
    cmd = command()
    await place(uow, cmd, timeout=timedelta(seconds=-1))
    await deliver(handlers.on_payment_captured, captured(cmd.order_id), ENV, uow)
    order = uow.orders.rows[cmd.order_id]
    assert (order.status, order.cancel_reason) == (OrderStatus.CANCELLED, "TIMEOUT")
    assert uow.published_types() == ["OrderPlaced", "OrderCancelled"]


async def test_the_owner_cancels_an_order_in_flight_as_customer_request():
    uow = FakeOrdersUoW()
    cmd = command()
    await place(uow, cmd)
    await deliver(handlers.on_stock_reserved, StockReserved(order_id=cmd.order_id, lines=()), ENV, uow)
    answer = await handlers.cancel_order(
        CancelOrder(order_id=cmd.order_id, requested_by=cmd.customer_id), uow, render=render
    )
    assert answer.body["status"] == "CANCELLED"
    assert uow.orders.rows[cmd.order_id].cancel_reason == "CUSTOMER_REQUEST"
    assert uow.published[-1].reason == "CUSTOMER_REQUEST"


async def test_a_confirmed_order_can_be_cancelled_which_asks_for_a_refund_and_restock():
    uow = FakeOrdersUoW()
    cmd = command()
    await place(uow, cmd)
    await deliver(handlers.on_payment_captured, captured(cmd.order_id), ENV, uow)
    await handlers.cancel_order(
        CancelOrder(order_id=cmd.order_id, requested_by=cmd.customer_id), uow, render=render
    )
    order = uow.orders.rows[cmd.order_id]
    assert [h.status for h in order.history] == ["PENDING", "CONFIRMED", "CANCELLED"]
    assert uow.published_types() == ["OrderPlaced", "OrderConfirmed", "OrderCancelled"]


async def test_cancelling_twice_is_a_conflict_and_publishes_nothing_more():
    uow = FakeOrdersUoW()
    cmd = command()
    await place(uow, cmd)
    cancel = CancelOrder(order_id=cmd.order_id, requested_by=cmd.customer_id)
    await handlers.cancel_order(cancel, uow, render=render)
    with pytest.raises(OrderAlreadyCancelled):
        await handlers.cancel_order(cancel, uow, render=render)
    assert uow.published_types() == ["OrderPlaced", "OrderCancelled"]


async def test_another_customer_cannot_cancel_an_order_but_an_admin_can():
    uow = FakeOrdersUoW()
    cmd = command()
    await place(uow, cmd)
    with pytest.raises(OrderNotFound):
        await handlers.cancel_order(
            CancelOrder(order_id=cmd.order_id, requested_by=uuid4()), uow, render=render
        )
    await handlers.cancel_order(
        CancelOrder(order_id=cmd.order_id, requested_by=uuid4(), by_admin=True), uow, render=render
    )
    assert uow.orders.rows[cmd.order_id].status is OrderStatus.CANCELLED


async def test_a_retry_with_the_same_key_and_body_returns_the_first_answer_and_creates_nothing():
    uow, customer = FakeOrdersUoW(), uuid4()
    first_cmd = command(customer, key="k-1")
    first = await place(uow, first_cmd)
    again = await place(uow, replace(first_cmd, order_id=uuid4()))
    assert again.replayed and again.body == first.body and again.status_code == 202
    assert len(uow.orders.rows) == 1 and uow.published_types() == ["OrderPlaced"]


async def test_the_same_key_with_a_different_body_is_refused():
    uow, customer = FakeOrdersUoW(), uuid4()
    await place(uow, command(customer, key="k-1", quantity=1))
    with pytest.raises(IdempotencyKeyReused):
        await place(uow, command(customer, key="k-1", quantity=2))
    assert len(uow.orders.rows) == 1


async def test_keys_belong_to_one_customer():
    uow = FakeOrdersUoW()
    await place(uow, command(key="shared"))
    await place(uow, command(key="shared"))
    assert len(uow.orders.rows) == 2


def test_the_deadline_is_set_from_the_saga_timeout():
    from orders.domain.model import Order

    at = datetime(2026, 1, 1, tzinfo=UTC)
    order = Order.place(
        order_id=uuid4(),
        customer_id=uuid4(),
        customer_email=None,
        payment_token="tok_visa",
        lines=[],
        currency="USD",
        at=at,
        saga_timeout=timedelta(seconds=30),
    )
    assert order.deadline_at == at + timedelta(seconds=30)
    assert not order.overdue(at + timedelta(seconds=29)) and order.overdue(at + timedelta(seconds=30))
