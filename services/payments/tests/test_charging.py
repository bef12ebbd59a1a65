"""The charging rules, through the bus with fakes of our own repository and provider."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from copy import deepcopy
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from emporium_events.bus import Delivery, MessageBus
from emporium_events.contracts import OrderCancelled, OrderLine, OrderPlaced, StockReserved
from emporium_events.envelope import Envelope
from emporium_events.testing import FakeUnitOfWork
from payments.adapters.provider import Charge, ProviderResult, Refund, decline_code
from payments.domain.model import Payment, PaymentStatus
from payments.service_layer import handlers


class FakePayments:
    def __init__(self) -> None:
        self.rows: dict[UUID, Payment] = {}
        self.statements = 0

    async def get_or_start_many(self, *, order_ids: Iterable[UUID]) -> dict[UUID, Payment]:
        self.statements += 1
        ids = list(order_ids)
        for order_id in ids:
            self.rows.setdefault(order_id, Payment(order_id=order_id, payment_id=uuid4()))
        return {o: deepcopy(self.rows[o]) for o in ids}

    async def save_many(self, payments: Iterable[Payment]) -> None:
        self.statements += 1
        for payment in payments:
            self.rows[payment.order_id] = deepcopy(payment)


class FakePaymentsUoW(FakeUnitOfWork):
    def __init__(self) -> None:
        super().__init__()
        self.payments = FakePayments()


class RecordingProvider:
    """Idempotent by key, like a real provider; counts its calls and the charges it made."""

    def __init__(self, *, declines_refunds: frozenset[str] = frozenset()) -> None:
        self.operations: dict[str, ProviderResult] = {}
        self.calls = 0
        self.charged: list[str] = []  # keys of the charges actually made, in order
        self._declines_refunds = declines_refunds

    async def charge_many(self, charges: Sequence[Charge]) -> dict[str, ProviderResult]:
        self.calls += 1
        out = {}
        for c in charges:
            if c.idempotency_key not in self.operations:
                self.charged.append(c.idempotency_key)
                decline = decline_code(c.token)
                self.operations[c.idempotency_key] = ProviderResult(
                    approved=decline is None,
                    operation_id=f"ch_{c.amount_cents}",
                    decline_code=decline,
                    amount_cents=c.amount_cents,
                    currency=c.currency,
                )
            out[c.idempotency_key] = self.operations[c.idempotency_key]
        return out

    async def refund_many(self, refunds: Sequence[Refund]) -> dict[str, ProviderResult]:
        self.calls += 1
        out = {}
        for r in refunds:
            declined = r.idempotency_key in self._declines_refunds
            out[r.idempotency_key] = self.operations.setdefault(
                r.idempotency_key,
                ProviderResult(
                    approved=not declined,
                    operation_id="re_1",
                    decline_code="refund_declined" if declined else None,
                    amount_cents=r.amount_cents,
                    currency=r.currency,
                ),
            )
        return out

    async def lookup_many(self, *, idempotency_keys: Sequence[str]) -> dict[str, ProviderResult]:
        self.calls += 1
        return {k: self.operations[k] for k in idempotency_keys if k in self.operations}


def placed(order_id, token="tok_visa", cents=2500):
    return OrderPlaced(
        order_id=order_id,
        customer_id=uuid4(),
        total_cents=cents,
        currency="USD",
        payment_token=token,
        placed_at=datetime.now(UTC),
        lines=(OrderLine(product_id=uuid4(), sku="s", quantity=1, unit_price_cents=cents),),
    )


def reserved(order_id):
    return StockReserved(order_id=order_id, lines=())


def cancelled(order_id):
    return OrderCancelled(
        order_id=order_id, customer_id=uuid4(), lines=(), reason="X", total_cents=2500, currency="USD"
    )


def delivery(event):
    return Delivery(event, Envelope.wrap(event, producer="t", aggregate_id=str(event.order_id)))


class World:
    def __init__(self, provider=None):
        self.uow, self.provider = FakePaymentsUoW(), provider or RecordingProvider()
        self.bus = MessageBus(lambda: self.uow, events=handlers.events_for(self.provider))

    async def deliver(self, *events_or_deliveries):
        batch = [e if isinstance(e, Delivery) else delivery(e) for e in events_or_deliveries]
        return await self.bus.handle_events("payments", batch)

    def status(self, order_id):
        return self.uow.payments.rows[order_id].status


async def test_a_reserved_order_with_a_good_card_is_captured_once():
    world, order = World(), uuid4()
    await world.deliver(placed(order))
    assert world.provider.calls == 0, "no charge before the stock is reserved"
    await world.deliver(reserved(order))
    assert world.status(order) is PaymentStatus.CAPTURED
    assert world.uow.published_types() == ["PaymentCaptured"] and world.uow.published[0].amount_cents == 2500


async def test_the_reservation_may_arrive_before_the_order_details():
    world, order = World(), uuid4()
    await world.deliver(reserved(order))
    await world.deliver(placed(order))
    assert world.uow.published_types() == ["PaymentCaptured"]


async def test_the_order_and_its_reservation_in_one_batch_charge_once():
    world, order = World(), uuid4()
    assert await world.deliver(placed(order), reserved(order)) == ["handled", "handled"]
    assert world.provider.charged == [f"charge:{order}"]
    assert world.uow.published_types() == ["PaymentCaptured"]


async def test_two_orders_in_one_batch_one_declined_are_charged_in_one_provider_call():
    world, good, bad = World(), uuid4(), uuid4()
    await world.deliver(placed(good), placed(bad, token="tok_chargeDeclined"))
    calls = world.provider.calls
    await world.deliver(reserved(good), reserved(bad))
    assert world.provider.calls == calls + 1
    assert world.status(good) is PaymentStatus.CAPTURED and world.status(bad) is PaymentStatus.FAILED
    assert world.uow.published_types() == ["PaymentCaptured", "PaymentFailed"]
    assert world.uow.published[1].reason == "PAYMENT_DECLINED"
    assert world.uow.payments.rows[bad].failure_reason == "PAYMENT_DECLINED:card_declined"


async def test_a_batch_is_one_load_and_one_save_whatever_its_size():
    world = World()
    orders = [uuid4() for _ in range(20)]
    await world.deliver(*(placed(o) for o in orders))
    assert world.uow.payments.statements == 2
    await world.deliver(*(reserved(o) for o in orders))
    assert world.uow.payments.statements == 4 and world.provider.calls == 1
    assert world.uow.published_types() == ["PaymentCaptured"] * 20


async def test_a_redelivered_batch_changes_nothing():
    world, orders = World(), [uuid4(), uuid4()]
    batch = [delivery(e) for o in orders for e in (placed(o), reserved(o))]
    assert await world.deliver(*batch) == ["handled"] * 4
    rows = dict(world.uow.payments.rows)
    assert await world.deliver(*batch) == ["duplicate"] * 4
    assert world.uow.payments.rows == rows
    assert world.provider.charged == [f"charge:{o}" for o in orders]
    assert world.uow.published_types() == ["PaymentCaptured"] * 2


async def test_events_republished_under_new_ids_never_charge_twice():
    world, order = World(), uuid4()
    await world.deliver(placed(order))
    for _ in range(3):
        await world.deliver(reserved(order), placed(uuid4()))
        await world.deliver(placed(order))
    assert world.provider.charged.count(f"charge:{order}") == 1
    assert world.uow.published_types().count("PaymentCaptured") == 1


async def test_a_declined_card_fails_the_payment_with_payment_declined():
    world, order = World(), uuid4()
    await world.deliver(placed(order, token="tok_chargeDeclined"))
    await world.deliver(reserved(order))
    assert world.status(order) is PaymentStatus.FAILED
    assert (
        world.uow.published_types() == ["PaymentFailed"]
        and world.uow.published[0].reason == "PAYMENT_DECLINED"
    )


async def test_an_order_cancelled_before_its_charge_is_never_charged():
    world, order = World(), uuid4()
    await world.deliver(placed(order))
    await world.deliver(cancelled(order))
    await world.deliver(reserved(order))
    assert world.provider.charged == [] and world.status(order) is PaymentStatus.VOIDED
    assert world.uow.published_types() == []


async def test_an_order_cancelled_in_the_batch_before_its_reservation_is_never_charged():
    world, order, other = World(), uuid4(), uuid4()
    await world.deliver(placed(order), cancelled(order), reserved(order), placed(other), reserved(other))
    assert world.provider.charged == [f"charge:{other}"]
    assert world.status(order) is PaymentStatus.VOIDED and world.status(other) is PaymentStatus.CAPTURED


async def test_cancelling_a_captured_order_refunds_it_once():
    world, order = World(), uuid4()
    await world.deliver(placed(order), reserved(order))
    await world.deliver(cancelled(order))
    await world.deliver(cancelled(order))
    assert world.status(order) is PaymentStatus.REFUNDED
    assert world.uow.published_types() == ["PaymentCaptured", "PaymentRefunded"]


async def test_a_batch_of_cancellations_refunds_the_captured_and_voids_the_rest():
    world, paid, unpaid, unknown = World(), uuid4(), uuid4(), uuid4()
    await world.deliver(placed(paid), reserved(paid), placed(unpaid))
    await world.deliver(cancelled(paid), cancelled(unpaid), cancelled(unknown))
    assert world.status(paid) is PaymentStatus.REFUNDED
    assert world.status(unpaid) is PaymentStatus.VOIDED and world.status(unknown) is PaymentStatus.VOIDED
    assert world.uow.published_types() == ["PaymentCaptured", "PaymentRefunded"]


async def test_a_declined_refund_fails_the_whole_batch_so_it_is_retried_one_by_one():
    order, other = uuid4(), uuid4()
    world = World(RecordingProvider(declines_refunds=frozenset({f"refund:{order}"})))
    await world.deliver(placed(order), reserved(order), placed(other), reserved(other))
    with pytest.raises(handlers.RefundDeclined, match=str(order)):
        await world.deliver(cancelled(order), cancelled(other))
    assert world.uow.published_types() == ["PaymentCaptured", "PaymentCaptured"]


async def test_the_provider_key_is_the_order_and_the_customers_key_is_kept_with_the_payment():
    world, order = World(), uuid4()
    event = placed(order).model_copy(update={"idempotency_key": "client-key-1"})
    await world.deliver(event, reserved(order))
    assert list(world.provider.operations) == [f"charge:{order}"]
    assert world.uow.payments.rows[order].client_key == "client-key-1"


async def test_a_charge_whose_record_was_lost_is_found_and_refunded_when_the_order_is_cancelled():
    world, order = World(), uuid4()
    # the provider charged under the order's key, but our transaction never committed
    await world.provider.charge_many([Charge(f"charge:{order}", "tok_visa", 2500, "USD")])
    await world.deliver(cancelled(order))
    assert world.status(order) is PaymentStatus.REFUNDED
    assert f"refund:{order}" in world.provider.operations
    assert world.uow.published[0].amount_cents == 2500
