"""The no-oversell rule under real concurrency: many transactions racing on one PostgreSQL."""

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from emporium_events.contracts import OrderLine, OrderPlaced
from emporium_events.envelope import Envelope
from emporium_events.tables import outbox
from emporium_kit.db import make_session_factory
from emporium_kit.migrations import folder, upgrade
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


async def reserve(sessions, event):
    async with InventoryUnitOfWork(sessions, producer_name="inventory") as uow:
        await handlers.reserve_stock(event, Envelope.wrap(event, producer="orders", aggregate_id="x"), uow)
        await uow.commit()


async def test_twenty_concurrent_orders_for_five_units_reserve_exactly_five(sessions):
    product = uuid4()
    async with InventoryUnitOfWork(sessions, producer_name="inventory") as uow:
        await handlers.set_stock_level(product, 5, uow)
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
    async with InventoryUnitOfWork(sessions, producer_name="inventory") as uow:
        await handlers.set_stock_level(a, 6, uow)
    async with InventoryUnitOfWork(sessions, producer_name="inventory") as uow:
        await handlers.set_stock_level(b, 6, uow)
    events = [placed((a, 1), (b, 1)) if n % 2 else placed((b, 1), (a, 1)) for n in range(10)]
    await asyncio.wait_for(asyncio.gather(*(reserve(sessions, e) for e in events)), timeout=30)
    async with sessions() as s:
        levels = (await s.execute(sa.text("SELECT on_hand, reserved FROM stock ORDER BY product_id"))).all()
    assert [tuple(r) for r in levels] == [(6, 6), (6, 6)]


async def test_the_database_itself_refuses_a_reservation_beyond_on_hand(sessions):
    product = uuid4()
    async with InventoryUnitOfWork(sessions, producer_name="inventory") as uow:
        await handlers.set_stock_level(product, 1, uow)
    async with sessions() as s:
        with pytest.raises(sa.exc.IntegrityError):
            await s.execute(sa.text("UPDATE stock SET reserved = 2 WHERE product_id = :p"), {"p": product})
