"""Batches through the bus on a real PostgreSQL, with the sandbox provider's own ledger."""

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

import pytest
import sqlalchemy as sa

from emporium_events.bus import Delivery, MessageBus
from emporium_events.contracts import OrderCancelled, OrderLine, OrderPlaced, StockReserved
from emporium_events.envelope import Envelope
from emporium_events.tables import outbox
from payments.adapters.orm import payments, sandbox_provider_operations
from payments.adapters.provider import SandboxProvider
from payments.domain.model import Payment, PaymentStatus
from payments.service_layer import handlers
from payments.service_layer.unit_of_work import PaymentsUnitOfWork


def placed(order_id, token="tok_visa"):
    return OrderPlaced(
        order_id=order_id,
        customer_id=uuid4(),
        total_cents=2500,
        currency="USD",
        payment_token=token,
        placed_at=datetime.now(UTC),
        lines=(OrderLine(product_id=uuid4(), sku="s", quantity=1, unit_price_cents=2500),),
    )


def reserved(order_id):
    return StockReserved(order_id=order_id, lines=())


def cancelled(order_id):
    return OrderCancelled(
        order_id=order_id, customer_id=uuid4(), lines=(), reason="X", total_cents=2500, currency="USD"
    )


def delivery(event):
    return Delivery(event, Envelope.wrap(event, producer="t", aggregate_id=str(event.order_id)))


def bus_for(sessions, provider=None):
    return MessageBus(
        lambda: PaymentsUnitOfWork(sessions, producer_name="payments"),
        events=handlers.events_for(provider or SandboxProvider(lambda: sessions)),
    )


async def statuses(sessions):
    async with sessions() as s:
        return dict((await s.execute(sa.select(payments.c.order_id, payments.c.status))).all())


async def replies(sessions):
    async with sessions() as s:
        rows = await s.execute(sa.select(outbox.c.event_type, outbox.c.envelope).order_by(outbox.c.id))
        return [(t.removeprefix("payments."), e["aggregate_id"], e["causation_id"]) for t, e in rows]


async def ledger(sessions):
    async with sessions() as s:
        rows = await s.execute(
            sa.select(
                sandbox_provider_operations.c.idempotency_key, sandbox_provider_operations.c.operation_id
            )
        )
        return dict(rows.all())


async def test_an_order_and_its_reservation_in_one_batch_are_charged_once_in_the_second_wave(sessions):
    order = uuid4()
    batch = [delivery(placed(order)), delivery(reserved(order))]
    assert await bus_for(sessions).handle_events("payments", batch) == ["handled", "handled"]
    assert await statuses(sessions) == {order: "CAPTURED"}
    assert await replies(sessions) == [("PaymentCaptured", str(order), str(batch[1].envelope.event_id))]
    assert list(await ledger(sessions)) == [f"charge:{order}"]


async def test_two_orders_in_one_batch_one_declined_each_get_their_answer(sessions):
    good, bad = uuid4(), uuid4()
    await bus_for(sessions).handle_events(
        "payments", [delivery(placed(good)), delivery(placed(bad, token="tok_chargeDeclinedExpiredCard"))]
    )
    batch = [delivery(reserved(good)), delivery(reserved(bad))]
    await bus_for(sessions).handle_events("payments", batch)
    assert await statuses(sessions) == {good: "CAPTURED", bad: "FAILED"}
    assert await replies(sessions) == [
        ("PaymentCaptured", str(good), str(batch[0].envelope.event_id)),
        ("PaymentFailed", str(bad), str(batch[1].envelope.event_id)),
    ]
    async with sessions() as s:
        reason = (
            await s.execute(sa.select(payments.c.failure_reason).where(payments.c.order_id == bad))
        ).scalar()
    assert reason == "PAYMENT_DECLINED:expired_card"


async def test_a_redelivered_batch_changes_nothing(sessions):
    orders = [uuid4() for _ in range(5)]
    batch = [delivery(e) for o in orders for e in (placed(o), reserved(o), cancelled(o))]
    await bus_for(sessions).handle_events("payments", batch)
    before = (await statuses(sessions), await replies(sessions), await ledger(sessions))
    assert await bus_for(sessions).handle_events("payments", batch) == ["duplicate"] * 15
    assert (await statuses(sessions), await replies(sessions), await ledger(sessions)) == before
    assert set(before[0].values()) == {"REFUNDED"} and len(before[2]) == 10


async def test_a_cancelled_before_charged_order_is_never_charged(sessions):
    order, other = uuid4(), uuid4()
    await bus_for(sessions).handle_events(
        "payments", [delivery(placed(order)), delivery(cancelled(order)), delivery(placed(other))]
    )
    await bus_for(sessions).handle_events("payments", [delivery(reserved(order)), delivery(reserved(other))])
    assert await statuses(sessions) == {order: "VOIDED", other: "CAPTURED"}
    assert list(await ledger(sessions)) == [f"charge:{other}"]


class CrashesAfterCharging(SandboxProvider):
    """Charges, then fails as a crash before our commit would: the batch rolls back."""

    crashes = 1

    async def charge_many(self, charges):
        results = await super().charge_many(charges)
        if self.crashes:
            self.crashes -= 1
            raise ConnectionError("lost before our commit")
        return results


async def test_a_batch_rolled_back_after_its_charges_is_retried_without_charging_again(sessions):
    orders = [uuid4() for _ in range(3)]
    provider = CrashesAfterCharging(lambda: sessions)
    await bus_for(sessions, provider).handle_events("payments", [delivery(placed(o)) for o in orders])
    batch = [delivery(reserved(o)) for o in orders]
    with pytest.raises(ConnectionError):
        await bus_for(sessions, provider).handle_events("payments", batch)
    assert set((await statuses(sessions)).values()) == {"AWAITING"} and await replies(sessions) == []
    made = await ledger(sessions)
    for each in batch:  # as the consumer does after a failed batch: one by one
        assert await bus_for(sessions, provider).handle_events("payments", [each]) == ["handled"]
    assert set((await statuses(sessions)).values()) == {"CAPTURED"}
    assert await ledger(sessions) == made, "the same charges, answered again under their keys"
    async with sessions() as s:
        charge_ids = dict(
            (await s.execute(sa.select(payments.c.order_id, payments.c.provider_charge_id))).all()
        )
    assert {charge_ids[o] for o in orders} == {made[f"charge:{o}"] for o in orders}


async def test_the_order_and_its_reservation_handled_at_once_by_two_batches_charge_each_order_once(sessions):
    for _ in range(5):
        orders = [uuid4() for _ in range(10)]
        await asyncio.wait_for(
            asyncio.gather(
                bus_for(sessions).handle_events("payments", [delivery(placed(o)) for o in orders]),
                bus_for(sessions).handle_events(
                    "payments", [delivery(reserved(o)) for o in reversed(orders)]
                ),
            ),
            timeout=30,
        )
        found = await statuses(sessions)
        assert {found[o] for o in orders} == {"CAPTURED"}
    kinds = [t for t, _, _ in await replies(sessions)]
    assert kinds == ["PaymentCaptured"] * 50 and len(await ledger(sessions)) == 50


@pytest.mark.parametrize("size", [1, 20])
async def test_round_trips_per_batch_do_not_grow_with_its_size(round_trips, sessions, size):
    """Our transaction: BEGIN, inbox claim, get-or-start, save, outbox (if it published),
    COMMIT; the sandbox's: one autocommit statement per provider call."""
    bus = bus_for(sessions)
    await bus.handle_events("payments", [delivery(placed(uuid4()))])  # the engine's first connect
    orders = [uuid4() for _ in range(size)]
    counted = {}
    for name, batch in [
        ("placed", [delivery(placed(o)) for o in orders]),
        ("reserved and charged", [delivery(reserved(o)) for o in orders]),
        ("cancelled and refunded", [delivery(cancelled(o)) for o in orders]),
        ("cancelled and voided", [delivery(cancelled(uuid4())) for _ in orders]),
        (
            "placed and reserved",
            [delivery(e) for o in [uuid4() for _ in orders] for e in (placed(o), reserved(o))],
        ),
    ]:
        with round_trips() as trips:
            await bus.handle_events("payments", batch)
        counted[name] = trips.total
    assert counted == {
        "placed": 5,
        "reserved and charged": 7,
        "cancelled and refunded": 7,
        "cancelled and voided": 6,
        "placed and reserved": 9,  # two waves: each event type its own load, call and save
    }


async def test_payments_read_back_exactly_as_they_were_saved_and_a_new_one_starts_awaiting(sessions):
    charged, declined, fresh = uuid4(), uuid4(), uuid4()
    async with PaymentsUnitOfWork(sessions, producer_name="payments") as uow:
        started = await uow.payments.get_or_start_many(order_ids=[charged, declined])
        started[charged].record_order(
            customer_id=uuid4(), amount_cents=2**40, currency="EUR", payment_token="tok_visa", client_key="k"
        )
        started[charged].record_reservation()
        started[charged].charge_key()
        started[charged].captured("ch_1")
        started[declined].failed("PAYMENT_DECLINED")
        await uow.payments.save_many(started.values())
        await uow.commit()
    async with PaymentsUnitOfWork(sessions, producer_name="payments") as uow:
        found = await uow.payments.get_or_start_many(order_ids=[fresh, declined, charged])
    assert {o: found[o] for o in (charged, declined)} == started
    assert found[fresh] == Payment(order_id=fresh, payment_id=found[fresh].payment_id)
    assert found[fresh].status is PaymentStatus.AWAITING
