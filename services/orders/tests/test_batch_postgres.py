"""The saga's replies handled as one batch through the real bus, unit of work and PostgreSQL:
one statement per table for the batch, each reply's consequence caused by that reply."""

import asyncio
from datetime import timedelta
from uuid import uuid4

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from emporium_events.bus import Delivery, MessageBus
from emporium_events.contracts import PaymentCaptured, PaymentFailed, ProductCreated, StockReserved
from emporium_events.envelope import Envelope
from emporium_events.tables import outbox
from emporium_kit.db import make_session_factory
from emporium_kit.migrations import folder, upgrade
from orders.domain.commands import IdempotencyKey, PlaceOrder, RequestedLine
from orders.service_layer import handlers
from orders.service_layer.unit_of_work import OrdersUnitOfWork

PRODUCT = uuid4()


@pytest.fixture
async def engine(databases):
    url = databases.create("orders")
    await asyncio.to_thread(upgrade, url, folder("orders"))
    engine = create_async_engine(url)
    yield engine
    await engine.dispose()


@pytest.fixture
def statements(monkeypatch):
    """Every statement sent, through SQLAlchemy or straight on psycopg (both end in a psycopg
    cursor), with whether it was queued in a pipeline (sent with the others, one round trip)."""
    seen: list[tuple[str, bool]] = []
    execute = psycopg.AsyncCursor.execute

    async def spy(self, query, params=None, **kwargs):
        seen.append((query, self.connection.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF))
        return await execute(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", spy)
    return seen


@pytest.fixture
async def bus(engine):
    sessions = make_session_factory(engine)
    bus = MessageBus(
        lambda: OrdersUnitOfWork(sessions, producer_name="orders"),
        commands=handlers.COMMANDS,
        events=handlers.EVENTS,
        dependencies={
            "catalog": None,
            "saga_timeout": timedelta(seconds=30),
            "render": lambda order: {"id": str(order.id)},
        },
    )
    product = ProductCreated(product_id=PRODUCT, sku="LAMP", name="Lamp", price_cents=1999, currency="USD")
    await bus.handle_events("orders", [delivery(product, str(PRODUCT))])
    return bus


def delivery(event, key):
    return Delivery(event, Envelope.wrap(event, producer="test", aggregate_id=key, correlation_id=key))


def command(*, key=None, order_id=None, customer_id=None) -> PlaceOrder:
    return PlaceOrder(
        order_id=order_id or uuid4(),
        customer_id=customer_id or uuid4(),
        customer_email=None,
        lines=(RequestedLine(product_id=PRODUCT, quantity=2),),
        payment_token="tok_visa",
        idempotency=IdempotencyKey(key=key, request_hash="same body") if key else None,
    )


async def place(bus) -> PlaceOrder:
    cmd = command()
    await bus.handle(cmd)
    return cmd


async def test_a_placed_order_is_written_with_its_lines_and_history_in_one_statement(bus, statements):
    statements.clear()
    await place(bus)
    writes = [s for s, _ in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE", "WITH"))]
    # the order with its lines and history, then its OrderPlaced in the outbox
    assert len(writes) == 2, writes


async def test_a_placed_order_its_idempotent_answer_and_its_event_reach_the_server_in_one_flight(
    bus, statements
):
    statements.clear()
    await bus.handle(command(key="k-1"))
    # the key's claim and the prices are read first (the handler needs them); the writes are
    # queued in one pipeline, sent together before the commit
    assert [s.split()[:2] for s, pipelined in statements if pipelined] == [
        ["WITH", "o"],
        ["UPDATE", "idempotency_keys"],
        ["INSERT", "INTO"],
    ]
    assert [s.split()[:3] for s, pipelined in statements if not pipelined][:2] == [
        ["INSERT", "INTO", "idempotency_keys"],
        ["SELECT", "product_id,", "sku,"],
    ]


async def test_an_order_that_fails_to_be_written_commits_nothing_not_even_its_key(bus, engine):
    first = command(key="k-1")
    assert not (await bus.handle(first)).replayed
    clash = command(key="k-2", order_id=first.order_id, customer_id=first.customer_id)
    with pytest.raises(psycopg.errors.UniqueViolation):  # raised in the pipeline, before COMMIT
        await bus.handle(clash)
    async with engine.connect() as conn:
        keys = (await conn.execute(sa.text("SELECT key, status_code FROM idempotency_keys"))).all()
        placed = (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one()
    assert (keys, placed) == ([("k-1", 202)], 1)
    # the connection goes on working: the second key is free again, the first one replays
    again = command(key="k-2", customer_id=first.customer_id)
    assert (await bus.handle(again)).body == {"id": str(again.order_id)}
    replay = await bus.handle(command(key="k-1", customer_id=first.customer_id))
    assert replay.replayed and replay.body == {"id": str(first.order_id)}


async def test_a_batch_of_replies_moves_each_order_and_each_consequence_names_its_cause(
    bus, engine, statements
):
    a, b, c = await place(bus), await place(bus), await place(bus)
    replies = [
        delivery(StockReserved(order_id=a.order_id, lines=()), str(a.order_id)),
        delivery(
            PaymentCaptured(order_id=b.order_id, payment_id=uuid4(), amount_cents=3998, currency="USD"),
            str(b.order_id),
        ),
        delivery(PaymentFailed(order_id=c.order_id, reason="PAYMENT_DECLINED"), str(c.order_id)),
        delivery(
            PaymentCaptured(order_id=a.order_id, payment_id=uuid4(), amount_cents=3998, currency="USD"),
            str(a.order_id),
        ),
    ]
    statements.clear()
    assert await bus.handle_events("orders", replies) == ["handled"] * 4
    async with engine.connect() as conn:
        status = dict((await conn.execute(sa.text("SELECT id, status FROM orders"))).all())
        published = (
            await conn.execute(
                sa.select(outbox.c.event_type, outbox.c.envelope["causation_id"].astext).order_by(outbox.c.id)
            )
        ).all()
    assert (status[a.order_id], status[b.order_id], status[c.order_id]) == (
        "CONFIRMED",
        "CONFIRMED",
        "CANCELLED",
    )
    assert published[-3:] == [  # in the order the orders changed: B and C in wave 1, A in wave 2
        ("orders.OrderConfirmed", str(replies[1].envelope.event_id)),
        ("orders.OrderCancelled", str(replies[2].envelope.event_id)),
        ("orders.OrderConfirmed", str(replies[3].envelope.event_id)),
    ]
    # Two waves (order A twice); per wave: one load per event type, one UPDATE, one history INSERT.
    updates = [s for s, _ in statements if s.lstrip().upper().startswith("UPDATE ORDERS")]
    assert len(updates) == 1, statements
