from copy import deepcopy
from datetime import UTC, datetime
from uuid import UUID, uuid4

from emporium_events.contracts import OrderCancelled, OrderLine, OrderPlaced, StockReserved
from emporium_events.envelope import Envelope
from emporium_events.testing import FakeUnitOfWork
from payments.adapters.provider import DECLINES, ProviderResult
from payments.domain.model import Payment, PaymentStatus
from payments.service_layer import handlers

ENV = Envelope(event_type="x", version=1, producer="t", aggregate_id="a", payload={})


class FakePayments:
    def __init__(self) -> None:
        self.rows: dict[UUID, Payment] = {}

    async def get_or_start(self, *, order_id: UUID) -> Payment:
        self.rows.setdefault(order_id, Payment(order_id=order_id, payment_id=uuid4()))
        return deepcopy(self.rows[order_id])

    async def save(self, payment: Payment) -> None:
        self.rows[payment.order_id] = deepcopy(payment)


class FakeUoW(FakeUnitOfWork):
    def __init__(self) -> None:
        super().__init__()
        self.payments = FakePayments()


class RecordingProvider:
    """Idempotent by key, like a real provider; counts the money that actually moved."""

    def __init__(self) -> None:
        self.operations: dict[str, ProviderResult] = {}
        self.calls = 0

    async def charge(self, *, idempotency_key, token, amount_cents, currency):
        self.calls += 1
        decline = DECLINES.get(token) if token != "tok_visa" else None
        return self.operations.setdefault(
            idempotency_key,
            ProviderResult(
                approved=decline is None,
                operation_id=f"ch_{amount_cents}",
                decline_code=decline,
                amount_cents=amount_cents,
                currency=currency,
            ),
        )

    async def refund(self, *, idempotency_key, charge_id, amount_cents, currency):
        return self.operations.setdefault(idempotency_key, ProviderResult(approved=True, operation_id="re_1"))

    async def lookup(self, *, idempotency_key):
        return self.operations.get(idempotency_key)


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


def cancelled(order_id):
    return OrderCancelled(
        order_id=order_id, customer_id=uuid4(), lines=(), reason="X", total_cents=2500, currency="USD"
    )


async def test_a_reserved_order_with_a_good_card_is_captured_once():
    uow, provider, order = FakeUoW(), RecordingProvider(), uuid4()
    await handlers.record_order(placed(order), uow, provider)
    assert provider.calls == 0, "no charge before the stock is reserved"
    await handlers.record_reservation(StockReserved(order_id=order, lines=()), uow, provider)
    assert uow.payments.rows[order].status is PaymentStatus.CAPTURED
    assert uow.published_types() == ["PaymentCaptured"] and uow.published[0].amount_cents == 2500


async def test_the_reservation_may_arrive_before_the_order_details():
    uow, provider, order = FakeUoW(), RecordingProvider(), uuid4()
    await handlers.record_reservation(StockReserved(order_id=order, lines=()), uow, provider)
    await handlers.record_order(placed(order), uow, provider)
    assert uow.published_types() == ["PaymentCaptured"]


async def test_redelivered_replies_never_charge_twice():
    uow, provider, order = FakeUoW(), RecordingProvider(), uuid4()
    await handlers.record_order(placed(order), uow, provider)
    for _ in range(3):
        await handlers.record_reservation(StockReserved(order_id=order, lines=()), uow, provider)
        await handlers.record_order(placed(order), uow, provider)
    assert provider.calls == 1
    assert uow.published_types() == ["PaymentCaptured"]


async def test_a_declined_card_fails_the_payment_with_payment_declined():
    uow, provider, order = FakeUoW(), RecordingProvider(), uuid4()
    await handlers.record_order(placed(order, token="tok_chargeDeclined"), uow, provider)
    await handlers.record_reservation(StockReserved(order_id=order, lines=()), uow, provider)
    assert uow.payments.rows[order].status is PaymentStatus.FAILED
    assert uow.published_types() == ["PaymentFailed"] and uow.published[0].reason == "PAYMENT_DECLINED"


async def test_an_order_cancelled_before_its_charge_is_never_charged():
    uow, provider, order = FakeUoW(), RecordingProvider(), uuid4()
    await handlers.record_order(placed(order), uow, provider)
    await handlers.refund_or_void(cancelled(order), uow, provider)
    await handlers.record_reservation(StockReserved(order_id=order, lines=()), uow, provider)
    assert provider.calls == 0 and uow.payments.rows[order].status is PaymentStatus.VOIDED


async def test_cancelling_a_captured_order_refunds_it_once():
    uow, provider, order = FakeUoW(), RecordingProvider(), uuid4()
    await handlers.record_order(placed(order), uow, provider)
    await handlers.record_reservation(StockReserved(order_id=order, lines=()), uow, provider)
    await handlers.refund_or_void(cancelled(order), uow, provider)
    await handlers.refund_or_void(cancelled(order), uow, provider)
    assert uow.payments.rows[order].status is PaymentStatus.REFUNDED
    assert uow.published_types() == ["PaymentCaptured", "PaymentRefunded"]


async def test_the_provider_key_is_the_order_and_the_customers_key_is_kept_with_the_payment():
    uow, provider, order = FakeUoW(), RecordingProvider(), uuid4()
    event = placed(order).model_copy(update={"idempotency_key": "client-key-1"})
    await handlers.record_order(event, uow, provider)
    await handlers.record_reservation(StockReserved(order_id=order, lines=()), uow, provider)
    assert list(provider.operations) == [f"charge:{order}"]
    assert uow.payments.rows[order].client_key == "client-key-1"


async def test_a_charge_whose_record_was_lost_is_found_and_refunded_when_the_order_is_cancelled():
    uow, provider, order = FakeUoW(), RecordingProvider(), uuid4()
    # the provider charged under the order's key, but our transaction never committed
    await provider.charge(
        idempotency_key=f"charge:{order}", token="tok_visa", amount_cents=2500, currency="USD"
    )
    await handlers.refund_or_void(cancelled(order), uow, provider)
    assert uow.payments.rows[order].status is PaymentStatus.REFUNDED
    assert f"refund:{order}" in provider.operations
