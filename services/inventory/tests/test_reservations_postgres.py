"""The no-oversell rule under real concurrency: many transactions racing on one PostgreSQL."""

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from emporium_events.bus import Delivery, MessageBus
from emporium_events.contracts import OrderConfirmed, OrderLine, OrderPlaced, StockLine
from emporium_events.envelope import Envelope
from emporium_events.tables import outbox
from emporium_kit.db import make_session_factory
from emporium_kit.migrations import folder, upgrade
from inventory.domain.commands import ExpireReservations, SetStockLevel
from inventory.domain.model import Reservation, ReservationStatus
from inventory.service_layer import handlers
from inventory.service_layer.unit_of_work import InventoryUnitOfWork

MIGRATIONS = folder("inventory")


@pytest.fixture
async def sessions(databases):
    url = databases.create("inventory")
    await asyncio.to_thread(upgrade, url, MIGRATIONS)
    engine = create_async_engine(url, pool_size=25)
    yield make_session_factory(engine)
    await engine.dispose()


def placed(*lines):
    return OrderPlaced(
        order_id=uuid4(),
        customer_id=uuid4(),
        total_cents=0,
        currency="USD",
        payment_token="tok_visa",
        placed_at=datetime.now(UTC),
        lines=tuple(OrderLine(product_id=p, sku="s", quantity=q, unit_price_cents=0) for p, q in lines),
    )


def bus_for(sessions):
    return MessageBus(
        lambda: InventoryUnitOfWork(sessions, producer_name="inventory"),
        commands=handlers.COMMANDS,
        events=handlers.events_for(reservation_ttl=timedelta(seconds=60)),
    )


def delivery(event):
    return Delivery(event, Envelope.wrap(event, producer="orders", aggregate_id=str(event.order_id)))


async def reserve(sessions, event):
    await bus_for(sessions).handle_events("inventory", [delivery(event)])


async def test_twenty_concurrent_orders_for_five_units_reserve_exactly_five(sessions):
    product = uuid4()
    await bus_for(sessions).handle(SetStockLevel(product, 5))
    await asyncio.gather(*(reserve(sessions, placed((product, 1))) for _ in range(20)))
    async with sessions() as s:
        on_hand, reserved = (await s.execute(sa.text("SELECT on_hand, reserved FROM stock"))).one()
        kinds = dict(
            (
                await s.execute(sa.select(outbox.c.event_type, sa.func.count()).group_by(outbox.c.event_type))
            ).all()
        )
    assert (on_hand, reserved) == (5, 5)
    assert kinds == {"inventory.StockReserved": 5, "inventory.StockReservationFailed": 15}


async def test_orders_locking_two_products_in_opposite_order_neither_deadlock_nor_oversell(sessions):
    a, b = uuid4(), uuid4()
    await bus_for(sessions).handle(SetStockLevel(a, 6))
    await bus_for(sessions).handle(SetStockLevel(b, 6))
    events = [placed((a, 1), (b, 1)) if n % 2 else placed((b, 1), (a, 1)) for n in range(10)]
    await asyncio.wait_for(asyncio.gather(*(reserve(sessions, e) for e in events)), timeout=30)
    async with sessions() as s:
        levels = (await s.execute(sa.text("SELECT on_hand, reserved FROM stock ORDER BY product_id"))).all()
    assert [tuple(r) for r in levels] == [(6, 6), (6, 6)]


async def test_the_database_itself_refuses_a_reservation_beyond_on_hand(sessions):
    product = uuid4()
    await bus_for(sessions).handle(SetStockLevel(product, 1))
    async with sessions() as s:
        with pytest.raises(sa.exc.IntegrityError):
            await s.execute(sa.text("UPDATE stock SET reserved = 2 WHERE product_id = :p"), {"p": product})


async def test_a_batch_of_orders_is_reserved_in_arrival_order_with_one_statement_per_table(sessions):
    product = uuid4()
    await bus_for(sessions).handle(SetStockLevel(product, 2))
    first, second, third = placed((product, 1)), placed((product, 1)), placed((product, 1))
    outcomes = await bus_for(sessions).handle_events(
        "inventory", [delivery(e) for e in (first, second, third)]
    )
    assert outcomes == ["handled"] * 3
    async with sessions() as s:
        statuses = dict((await s.execute(sa.text("SELECT order_id, status FROM reservations"))).all())
        stock = (await s.execute(sa.text("SELECT on_hand, reserved FROM stock"))).one()
        replies = (await s.execute(sa.select(outbox.c.event_type).order_by(outbox.c.id))).scalars().all()
    assert statuses == {first.order_id: "RESERVED", second.order_id: "RESERVED", third.order_id: "FAILED"}
    assert tuple(stock) == (2, 2)
    assert replies == [
        "inventory.StockReserved",
        "inventory.StockReserved",
        "inventory.StockReservationFailed",
    ]


async def test_an_order_placed_and_cancelled_in_one_batch_ends_released_and_a_replay_changes_nothing(
    sessions,
):
    from emporium_events.contracts import OrderCancelled, StockLine

    product = uuid4()
    await bus_for(sessions).handle(SetStockLevel(product, 3))
    order = placed((product, 2))
    cancelled = OrderCancelled(
        order_id=order.order_id,
        customer_id=order.customer_id,
        lines=(StockLine(product_id=product, quantity=2),),
        reason="PAYMENT_DECLINED",
        total_cents=0,
        currency="USD",
    )
    batch = [delivery(order), delivery(cancelled)]
    assert await bus_for(sessions).handle_events("inventory", batch) == ["handled", "handled"]
    assert await bus_for(sessions).handle_events("inventory", batch) == ["duplicate", "duplicate"]
    async with sessions() as s:
        status = (await s.execute(sa.text("SELECT status FROM reservations"))).scalar_one()
        stock = (await s.execute(sa.text("SELECT on_hand, reserved FROM stock"))).one()
        replies = (await s.execute(sa.select(outbox.c.event_type).order_by(outbox.c.id))).scalars().all()
    assert status == "RELEASED" and tuple(stock) == (3, 0)
    assert replies == ["inventory.StockReserved", "inventory.StockReleased"]


async def test_reservations_read_back_exactly_as_they_were_saved_and_a_save_updates_them(sessions):
    a, b = uuid4(), uuid4()
    expires_at = datetime.now(UTC) + timedelta(seconds=60)
    saved = [
        Reservation(uuid4(), ReservationStatus.RESERVED, {a: 2, b: 1}, expires_at=expires_at),
        Reservation(uuid4(), ReservationStatus.FAILED, {a: 5}, reason="OUT_OF_STOCK"),
        Reservation(uuid4(), ReservationStatus.RELEASED, reason="PAYMENT_DECLINED"),
    ]
    async with InventoryUnitOfWork(sessions, producer_name="inventory") as uow:
        await uow.reservations.save_many(saved)
        await uow.reservations.save_many([Reservation(uuid4(), ReservationStatus.RESERVED, {b: 1})])
        await uow.commit()
    held = saved[0]
    held.status, held.reason = ReservationStatus.COMMITTED, "late"
    async with InventoryUnitOfWork(sessions, producer_name="inventory") as uow:
        await uow.reservations.save_many([held])
        await uow.commit()
    async with InventoryUnitOfWork(sessions, producer_name="inventory") as uow:
        found = await uow.reservations.get_many_for_update(order_ids=[r.order_id for r in saved])
    assert found == {r.order_id: r for r in saved}
    assert found[held.order_id].expires_at.utcoffset() is not None


async def test_a_confirmed_order_keeps_its_units_for_good_and_an_expired_one_gives_them_back(sessions):
    product = uuid4()
    await bus_for(sessions).handle(SetStockLevel(product, 5))
    kept, lapsed = placed((product, 2)), placed((product, 1))
    await reserve(sessions, kept)
    expiring = MessageBus(
        lambda: InventoryUnitOfWork(sessions, producer_name="inventory"),
        commands=handlers.COMMANDS,
        events=handlers.events_for(reservation_ttl=timedelta(seconds=-1)),
    )
    await expiring.handle_events("inventory", [delivery(lapsed)])
    confirmed = OrderConfirmed(
        order_id=kept.order_id,
        customer_id=kept.customer_id,
        lines=(StockLine(product_id=product, quantity=2),),
        total_cents=0,
        currency="USD",
    )
    assert await bus_for(sessions).handle_events("inventory", [delivery(confirmed)]) == ["handled"]
    assert await bus_for(sessions).handle(ExpireReservations()) == 1
    async with sessions() as s:
        statuses = dict((await s.execute(sa.text("SELECT order_id, status FROM reservations"))).all())
        stock = (await s.execute(sa.text("SELECT on_hand, reserved FROM stock"))).one()
    assert statuses == {kept.order_id: "COMMITTED", lapsed.order_id: "EXPIRED"}
    assert tuple(stock) == (3, 0)
