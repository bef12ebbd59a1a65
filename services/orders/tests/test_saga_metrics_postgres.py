"""Saga outcomes and completion time are counted once per order, after the commit that ended
it, through the real unit of work on a real PostgreSQL."""

import asyncio
from datetime import timedelta
from uuid import uuid4

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import create_async_engine

from emporium_events.bus import Delivery
from emporium_events.contracts import PaymentCaptured, PaymentFailed, ProductCreated
from emporium_events.envelope import Envelope
from emporium_kit.db import make_session_factory
from emporium_kit.migrations import folder, upgrade
from orders.domain.commands import CancelOrder, ExpireOverdue, PlaceOrder, RequestedLine
from orders.service_layer import handlers
from orders.service_layer.unit_of_work import OrdersUnitOfWork

MIGRATIONS = folder("orders")
PRODUCT = uuid4()


@pytest.fixture
async def sessions(databases):
    url = databases.create("orders")
    await asyncio.to_thread(upgrade, url, MIGRATIONS)
    engine = create_async_engine(url)
    sessions = make_session_factory(engine)
    event = ProductCreated(product_id=PRODUCT, sku="LAMP", name="Lamp", price_cents=1999, currency="USD")
    await deliver(sessions, event, handlers.EVENTS[event.event_type])
    yield sessions
    await engine.dispose()


def uow(sessions) -> OrdersUnitOfWork:
    return OrdersUnitOfWork(sessions, producer_name="orders")


async def deliver(sessions, event, handler, envelope=None, *, commit=True) -> Envelope:
    """As the consumer does: claim the event in the inbox, handle it, commit."""
    envelope = envelope or Envelope.wrap(event, producer="test", aggregate_id="x")
    async with uow(sessions) as u:
        if await u.claim_many(consumer="orders", envelopes=[envelope]):
            await handler([Delivery(event, envelope)], u)
        if commit:
            await u.commit()
    return envelope


async def placed(sessions, timeout=timedelta(seconds=30)):
    cmd = PlaceOrder(
        order_id=uuid4(),
        customer_id=uuid4(),
        customer_email=None,
        lines=(RequestedLine(product_id=PRODUCT, quantity=1),),
        payment_token="tok_visa",
    )
    async with uow(sessions) as u:
        await handlers.place_order(cmd, u, None, saga_timeout=timeout, render=lambda order: {})
        await u.commit()
    return cmd  # placed in our price copy: the catalog (None) is never asked


def outcomes(outcome: str, reason: str = "") -> float:
    labels = {"outcome": outcome, "reason": reason}
    return REGISTRY.get_sample_value("emporium_orders_saga_outcomes_total", labels) or 0.0


def completions(le: str | None = None) -> float:
    if le is None:
        return REGISTRY.get_sample_value("emporium_orders_saga_completion_seconds_count") or 0.0
    return REGISTRY.get_sample_value("emporium_orders_saga_completion_seconds_bucket", {"le": le}) or 0.0


def captured(order_id) -> PaymentCaptured:
    return PaymentCaptured(order_id=order_id, payment_id=uuid4(), amount_cents=1999, currency="USD")


async def test_a_confirmed_order_counts_once_in_saga_outcomes_even_when_its_capture_is_redelivered(sessions):
    cmd = await placed(sessions)
    before, timed, fast = outcomes("confirmed"), completions(), completions("30.0")

    envelope = await deliver(sessions, captured(cmd.order_id), handlers.on_payment_captured)
    await deliver(sessions, captured(cmd.order_id), handlers.on_payment_captured, envelope)  # redelivered
    await deliver(sessions, captured(cmd.order_id), handlers.on_payment_captured)  # another capture event

    assert outcomes("confirmed") == before + 1
    assert completions() == timed + 1
    assert completions("30.0") == fast + 1, "confirmed within a second: inside the 30 s objective"


async def test_a_cancelled_order_counts_with_its_reason_and_a_rolled_back_one_does_not_count(sessions):
    declined, rolled_back = await placed(sessions), await placed(sessions)
    before = outcomes("cancelled", "PAYMENT_DECLINED")

    failed = PaymentFailed(order_id=rolled_back.order_id, reason="PAYMENT_DECLINED")
    await deliver(sessions, failed, handlers.on_payment_failed, commit=False)
    assert outcomes("cancelled", "PAYMENT_DECLINED") == before

    failed = PaymentFailed(order_id=declined.order_id, reason="PAYMENT_DECLINED")
    await deliver(sessions, failed, handlers.on_payment_failed)
    assert outcomes("cancelled", "PAYMENT_DECLINED") == before + 1


async def test_cancelling_a_confirmed_order_is_a_refund_not_a_second_saga_outcome(sessions):
    cmd = await placed(sessions)
    await deliver(sessions, captured(cmd.order_id), handlers.on_payment_captured)
    confirmed, by_customer, timed = (
        outcomes("confirmed"),
        outcomes("cancelled", "CUSTOMER_REQUEST"),
        completions(),
    )

    async with uow(sessions) as u:
        await handlers.cancel_order(
            CancelOrder(order_id=cmd.order_id, requested_by=cmd.customer_id), u, render=lambda order: {}
        )
        await u.commit()

    assert (outcomes("confirmed"), outcomes("cancelled", "CUSTOMER_REQUEST"), completions()) == (
        confirmed,
        by_customer,
        timed,
    )


async def test_an_order_past_its_deadline_counts_as_cancelled_by_timeout(sessions):
    await placed(sessions, timeout=timedelta(seconds=-1))
    before = outcomes("cancelled", "TIMEOUT")
    async with uow(sessions) as u:
        assert await handlers.expire_overdue(ExpireOverdue(), u) == 1
        await u.commit()
    assert outcomes("cancelled", "TIMEOUT") == before + 1
