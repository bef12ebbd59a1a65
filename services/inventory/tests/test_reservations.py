from datetime import UTC, datetime
from uuid import uuid4

import pytest
from inventory_fakes import FakeInventoryUoW

from emporium_events.bus import Delivery
from emporium_events.contracts import OrderCancelled, OrderConfirmed, OrderLine, OrderPlaced, StockLine
from emporium_events.envelope import Envelope
from inventory.domain.commands import ExpireReservations, SetStockLevel
from inventory.domain.model import InsufficientStock, StockBelowReserved, StockItem, merge_lines
from inventory.service_layer import handlers

A, B = uuid4(), uuid4()


def placed(order_id, *lines):
    return OrderPlaced(
        order_id=order_id,
        customer_id=uuid4(),
        total_cents=0,
        currency="USD",
        payment_token="tok_visa",
        placed_at=datetime.now(UTC),
        lines=tuple(OrderLine(product_id=p, sku="s", quantity=q, unit_price_cents=0) for p, q in lines),
    )


def finished(cls, order_id, *lines, **extra):
    return cls(
        order_id=order_id,
        customer_id=uuid4(),
        total_cents=0,
        currency="USD",
        lines=tuple(StockLine(product_id=p, quantity=q) for p, q in lines),
        **extra,
    )


ENV = Envelope(event_type="x", version=1, producer="t", aggregate_id="a", payload={})


async def reserve(event, envelope, uow, **kw):
    await handlers.reserve_stock([Delivery(event, envelope)], uow, **kw)


async def confirm(event, envelope, uow):
    await handlers.commit_reservations([Delivery(event, envelope)], uow)


async def release(event, envelope, uow):
    await handlers.release_reservations([Delivery(event, envelope)], uow)


def level(uow, product_id):
    item = uow.stock.items[product_id]
    return item.on_hand, item.reserved


async def test_an_order_that_fits_reserves_every_line_and_says_so():
    uow, order = FakeInventoryUoW({A: 5, B: 1}), uuid4()
    await reserve(placed(order, (A, 2), (B, 1)), ENV, uow)
    assert level(uow, A) == (5, 2) and level(uow, B) == (1, 1)
    assert uow.published_types() == ["StockReserved"]


async def test_one_short_line_reserves_nothing_and_reports_out_of_stock():
    uow, order = FakeInventoryUoW({A: 5, B: 1}), uuid4()
    await reserve(placed(order, (A, 2), (B, 2)), ENV, uow)
    assert level(uow, A) == (5, 0) and level(uow, B) == (1, 0)
    assert uow.published_types() == ["StockReservationFailed"]
    assert uow.published[0].reason == "OUT_OF_STOCK" and uow.published[0].product_ids == (B,)


async def test_two_lines_of_the_same_product_are_counted_together():
    uow = FakeInventoryUoW({A: 3})
    await reserve(placed(uuid4(), (A, 2), (A, 2)), ENV, uow)
    assert uow.published_types() == ["StockReservationFailed"]


async def test_a_product_without_a_stock_record_is_out_of_stock():
    uow = FakeInventoryUoW({})
    await reserve(placed(uuid4(), (A, 1)), ENV, uow)
    assert uow.published_types() == ["StockReservationFailed"]


async def test_the_same_order_placed_twice_is_answered_once():
    uow, order = FakeInventoryUoW({A: 5}), uuid4()
    await reserve(placed(order, (A, 2)), ENV, uow)
    await reserve(placed(order, (A, 2)), ENV, uow)
    assert level(uow, A) == (5, 2) and len(uow.published) == 1


async def test_confirmation_turns_the_reservation_into_a_deduction_once():
    uow, order = FakeInventoryUoW({A: 5}), uuid4()
    await reserve(placed(order, (A, 2)), ENV, uow)
    for _ in range(2):
        await confirm(finished(OrderConfirmed, order, (A, 2)), ENV, uow)
    assert level(uow, A) == (3, 0)


async def test_cancellation_releases_the_reservation_once_and_reports_it():
    uow, order = FakeInventoryUoW({A: 5}), uuid4()
    await reserve(placed(order, (A, 2)), ENV, uow)
    for _ in range(2):
        await release(finished(OrderCancelled, order, (A, 2), reason="PAYMENT_DECLINED"), ENV, uow)
    assert level(uow, A) == (5, 0)
    assert uow.published_types() == ["StockReserved", "StockReleased"]


async def test_cancelling_an_order_whose_reservation_failed_releases_nothing():
    uow, order = FakeInventoryUoW({A: 1}), uuid4()
    await reserve(placed(order, (A, 2)), ENV, uow)
    await release(finished(OrderCancelled, order, (A, 2), reason="OUT_OF_STOCK"), ENV, uow)
    assert level(uow, A) == (1, 0)
    assert uow.published_types() == ["StockReservationFailed"]


async def test_cancelling_a_confirmed_order_puts_its_stock_back():
    uow, order = FakeInventoryUoW({A: 5}), uuid4()
    await reserve(placed(order, (A, 2)), ENV, uow)
    await confirm(finished(OrderConfirmed, order, (A, 2)), ENV, uow)
    await release(finished(OrderCancelled, order, (A, 2), reason="CUSTOMER_REQUEST"), ENV, uow)
    assert level(uow, A) == (5, 0)


async def test_an_admin_cannot_set_on_hand_below_what_open_orders_hold():
    uow, order = FakeInventoryUoW({A: 5}), uuid4()
    await reserve(placed(order, (A, 4)), ENV, uow)
    with pytest.raises(StockBelowReserved):
        await handlers.set_stock_level(SetStockLevel(A, 3), uow)
    item = await handlers.set_stock_level(SetStockLevel(A, 4), uow)
    assert (item.on_hand, item.available) == (4, 0)


def test_a_stock_item_never_reserves_more_than_is_available():
    item = StockItem(product_id=A, on_hand=2)
    item.reserve(2)
    with pytest.raises(InsufficientStock):
        item.reserve(1)


def test_lines_are_merged_and_sorted_so_locks_are_always_taken_in_one_order():
    merged = merge_lines([(B, 1), (A, 2), (B, 3)])
    assert merged == {A: 2, B: 4} if str(A) < str(B) else {B: 4, A: 2}
    assert list(merged) == sorted(merged, key=str)


async def test_a_reservation_whose_ttl_passed_is_released_once_and_reported():
    from datetime import timedelta

    uow, order = FakeInventoryUoW({A: 5}), uuid4()
    await reserve(placed(order, (A, 2)), ENV, uow, ttl=timedelta(seconds=-1))
    assert await handlers.expire_reservations(ExpireReservations(), uow) == 1
    assert await handlers.expire_reservations(ExpireReservations(), uow) == 0
    assert level(uow, A) == (5, 0)
    assert uow.published_types() == ["StockReserved", "StockReleased"]
    # a confirmation that reaches inventory late still takes the stock: the order is paid
    await confirm(finished(OrderConfirmed, order, (A, 2)), ENV, uow)
    assert level(uow, A) == (3, 0)
    assert uow.reservations.rows[order].status.value == "COMMITTED"


async def test_a_late_confirmation_whose_stock_was_sold_meanwhile_is_flagged_not_forced():
    from datetime import timedelta

    uow, late, other = FakeInventoryUoW({A: 2}), uuid4(), uuid4()
    await reserve(placed(late, (A, 2)), ENV, uow, ttl=timedelta(seconds=-1))
    await handlers.expire_reservations(ExpireReservations(), uow)
    await reserve(placed(other, (A, 2)), ENV, uow)
    await confirm(finished(OrderConfirmed, late, (A, 2)), ENV, uow)
    assert level(uow, A) == (2, 2)
    assert uow.reservations.rows[late].reason == "OVERSOLD_AFTER_EXPIRY"


async def test_a_reservation_within_its_ttl_is_kept():
    uow = FakeInventoryUoW({A: 5})
    await reserve(placed(uuid4(), (A, 2)), ENV, uow)
    assert await handlers.expire_reservations(ExpireReservations(), uow) == 0
    assert level(uow, A) == (5, 2)


async def test_an_order_placed_event_arriving_after_its_cancellation_reserves_nothing():
    uow, order = FakeInventoryUoW({A: 5}), uuid4()
    await release(finished(OrderCancelled, order, (A, 2), reason="TIMEOUT"), ENV, uow)
    await reserve(placed(order, (A, 2)), ENV, uow)
    assert level(uow, A) == (5, 0) and uow.published == []
