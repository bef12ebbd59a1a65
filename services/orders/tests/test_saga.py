from datetime import timedelta
from uuid import uuid4

import pytest
from orders_fakes import FakeOrdersUoW, FakePriceList, bus_for, deliver

from emporium_events.contracts import (
    PaymentCaptured,
    PaymentFailed,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from emporium_events.envelope import Envelope
from orders.adapters.catalog import PricedProduct
from orders.domain.commands import PlaceOrder, RequestedLine
from orders.domain.model import MixedCurrencies, OrderStatus, UnknownProduct
from orders.service_layer import handlers

ENV = Envelope(event_type="x", version=1, producer="t", aggregate_id="a", payload={})
MUG = PricedProduct(product_id=uuid4(), sku="MUG", name="Mug", price_cents=1250, currency="USD")
TEA = PricedProduct(product_id=uuid4(), sku="TEA", name="Tea", price_cents=499, currency="USD")
EURO = PricedProduct(product_id=uuid4(), sku="EUR", name="Euro thing", price_cents=100, currency="EUR")
CATALOG = FakePriceList(MUG, TEA, EURO)


def command(*lines, token="tok_visa"):
    return PlaceOrder(
        order_id=uuid4(),
        customer_id=uuid4(),
        customer_email="c@example.com",
        payment_token=token,
        lines=tuple(RequestedLine(product_id=p.product_id, quantity=q) for p, q in lines),
    )


TIMEOUT = timedelta(seconds=30)


async def place(cmd, uow, catalog=CATALOG):
    answer = await bus_for(uow, catalog, saga_timeout=TIMEOUT, render=lambda o: {"id": str(o.id)}).handle(cmd)
    return uow.orders.rows.get(cmd.order_id), answer


async def placed_order(uow, *lines):
    order, _ = await place(command(*lines or [(MUG, 2), (TEA, 1)]), uow)
    return order


async def test_placing_an_order_prices_it_on_the_server_and_publishes_order_placed():
    uow = FakeOrdersUoW()
    order = await placed_order(uow, (MUG, 2), (TEA, 1))
    assert order.status is OrderStatus.PENDING
    assert order.total_cents == 2 * 1250 + 499
    assert uow.committed == 1
    [event] = uow.published
    assert type(event).__name__ == "OrderPlaced"
    assert event.total_cents == 2999 and event.payment_token == "tok_visa"
    assert [line.unit_price_cents for line in event.lines] == [1250, 499]


async def test_an_unknown_product_is_refused_and_nothing_is_stored():
    uow = FakeOrdersUoW()
    ghost = PricedProduct(product_id=uuid4(), sku="X", name="X", price_cents=1, currency="USD")
    with pytest.raises(UnknownProduct):
        await place(command((ghost, 1)), uow)
    assert uow.orders.rows == {} and uow.published == [] and uow.committed == 0


async def test_products_in_two_currencies_cannot_share_an_order():
    with pytest.raises(MixedCurrencies):
        await place(command((MUG, 1), (EURO, 1)), FakeOrdersUoW())


async def test_a_captured_payment_confirms_the_order_and_publishes_order_confirmed():
    uow = FakeOrdersUoW()
    order = await placed_order(uow)
    await deliver(handlers.on_stock_reserved, StockReserved(order_id=order.id, lines=()), ENV, uow)
    await deliver(
        handlers.on_payment_captured,
        PaymentCaptured(order_id=order.id, payment_id=uuid4(), amount_cents=2999, currency="USD"),
        ENV,
        uow,
    )
    stored = uow.orders.rows[order.id]
    assert stored.status is OrderStatus.CONFIRMED
    assert [h.status for h in stored.history] == ["PENDING", "STOCK_RESERVED", "CONFIRMED"]
    assert uow.published_types() == ["OrderPlaced", "OrderConfirmed"]


async def test_a_capture_read_before_the_reservation_still_confirms_and_the_late_reservation_changes_nothing():
    uow = FakeOrdersUoW()
    order = await placed_order(uow)
    await deliver(
        handlers.on_payment_captured,
        PaymentCaptured(order_id=order.id, payment_id=uuid4(), amount_cents=2999, currency="USD"),
        ENV,
        uow,
    )
    await deliver(handlers.on_stock_reserved, StockReserved(order_id=order.id, lines=()), ENV, uow)
    assert uow.orders.rows[order.id].status is OrderStatus.CONFIRMED


async def test_a_failed_reservation_cancels_the_order_as_out_of_stock():
    uow = FakeOrdersUoW()
    order = await placed_order(uow)
    await deliver(
        handlers.on_stock_reservation_failed,
        StockReservationFailed(order_id=order.id, reason="OUT_OF_STOCK"),
        ENV,
        uow,
    )
    stored = uow.orders.rows[order.id]
    assert (stored.status, stored.cancel_reason) == (OrderStatus.CANCELLED, "OUT_OF_STOCK")
    cancelled = uow.published[-1]
    assert type(cancelled).__name__ == "OrderCancelled" and cancelled.reason == "OUT_OF_STOCK"
    assert {(line.product_id, line.quantity) for line in cancelled.lines} == {
        (MUG.product_id, 2),
        (TEA.product_id, 1),
    }


async def test_a_declined_payment_cancels_the_order_and_asks_for_compensation():
    uow = FakeOrdersUoW()
    order = await placed_order(uow)
    await deliver(handlers.on_stock_reserved, StockReserved(order_id=order.id, lines=()), ENV, uow)
    await deliver(
        handlers.on_payment_failed, PaymentFailed(order_id=order.id, reason="PAYMENT_DECLINED"), ENV, uow
    )
    await deliver(
        handlers.on_compensated,
        StockReleased(order_id=order.id, lines=(StockLine(product_id=MUG.product_id, quantity=2),)),
        ENV,
        uow,
    )
    stored = uow.orders.rows[order.id]
    assert (stored.status, stored.cancel_reason) == (OrderStatus.CANCELLED, "PAYMENT_DECLINED")
    assert [h.status for h in stored.history] == ["PENDING", "STOCK_RESERVED", "CANCELLED", "STOCK_RELEASED"]
    assert uow.published_types() == ["OrderPlaced", "OrderCancelled"]


async def test_replies_after_the_saga_ended_change_nothing_and_publish_nothing():
    uow = FakeOrdersUoW()
    order = await placed_order(uow)
    await deliver(
        handlers.on_payment_failed, PaymentFailed(order_id=order.id, reason="PAYMENT_DECLINED"), ENV, uow
    )
    await deliver(
        handlers.on_payment_failed, PaymentFailed(order_id=order.id, reason="PAYMENT_DECLINED"), ENV, uow
    )
    await deliver(
        handlers.on_payment_captured,
        PaymentCaptured(order_id=order.id, payment_id=uuid4(), amount_cents=1, currency="USD"),
        ENV,
        uow,
    )
    assert uow.orders.rows[order.id].status is OrderStatus.CANCELLED
    assert uow.published_types() == ["OrderPlaced", "OrderCancelled"]


async def test_a_reply_for_an_order_this_service_never_stored_is_ignored():
    uow = FakeOrdersUoW()
    await deliver(
        handlers.on_payment_captured,
        PaymentCaptured(order_id=uuid4(), payment_id=uuid4(), amount_cents=1, currency="USD"),
        ENV,
        uow,
    )
    assert uow.published == []
