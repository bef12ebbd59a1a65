"""Payments' handlers, run by its message bus (which opens the unit of work and commits it).

The charge needs two facts that arrive on two topics in either order: the order's amount and
card token (OrderPlaced) and its stock reservation (StockReserved). Whichever comes second
charges. The provider call carries the idempotency key ``charge:<order_id>``, so a redelivery,
or a crash between the provider's answer and our commit, never charges twice.

The handlers take a batch of one event type (each order at most once) and work set-based: one
statement starts or locks the batch's payments, one provider call makes the batch's charges (or
refunds), one statement saves the payments. A batch that raises is rolled back whole and the
consumer handles its events again one by one; what the provider did in the meantime stays done
and is answered again under the same keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from emporium_events.bus import BatchHandler, Delivery
from emporium_events.contracts import (
    OrderCancelled,
    OrderPlaced,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    StockReserved,
)
from payments.adapters.provider import Charge, PaymentProvider, Refund
from payments.domain.model import PAYMENT_DECLINED, Payment, PaymentStatus
from payments.service_layer.unit_of_work import PaymentsUnitOfWork


async def record_orders(
    deliveries: Sequence[Delivery[OrderPlaced]], uow: PaymentsUnitOfWork, provider: PaymentProvider
) -> None:
    """The orders' details; each order whose stock is already reserved is charged."""
    payments = await uow.payments.get_or_start_many(order_ids=[d.event.order_id for d in deliveries])
    for delivery in deliveries:
        event = delivery.event
        payments[event.order_id].record_order(
            customer_id=event.customer_id,
            amount_cents=event.total_cents,
            currency=event.currency,
            payment_token=event.payment_token,
            client_key=event.idempotency_key,
        )
    await _charge_ready(deliveries, payments, uow, provider)


async def record_reservations(
    deliveries: Sequence[Delivery[StockReserved]], uow: PaymentsUnitOfWork, provider: PaymentProvider
) -> None:
    """The orders' reservations; each order whose details are already known is charged."""
    payments = await uow.payments.get_or_start_many(order_ids=[d.event.order_id for d in deliveries])
    for delivery in deliveries:
        payments[delivery.event.order_id].record_reservation()
    await _charge_ready(deliveries, payments, uow, provider)


class RefundDeclined(Exception):
    """The provider refused a refund: retried, then dead-lettered for a person to look at.

    Raised for the whole batch (nothing of it is kept); the consumer then handles its events
    one by one, so only the declined order's event goes on being retried."""


async def refund_or_void(
    deliveries: Sequence[Delivery[OrderCancelled]], uow: PaymentsUnitOfWork, provider: PaymentProvider
) -> None:
    """Compensation: refund a captured payment; make sure an uncharged one is never charged."""
    payments = await uow.payments.get_or_start_many(order_ids=[d.event.order_id for d in deliveries])
    awaiting = [p for p in payments.values() if p.status is PaymentStatus.AWAITING]
    if awaiting:
        # A charge may have been made whose record never committed (a crash, a dead letter):
        # ask the provider before deciding nothing was taken.
        earlier = await provider.lookup_many(idempotency_keys=[p.charge_key() for p in awaiting])
        for payment in awaiting:
            found = earlier.get(payment.charge_key())
            if found is None or not found.approved:
                payment.voided()
                continue
            payment.captured(found.operation_id)
            if payment.amount_cents is None:
                payment.amount_cents = found.amount_cents
            payment.currency = payment.currency or found.currency
    captured = [
        (delivery, payments[delivery.event.order_id])
        for delivery in deliveries
        if payments[delivery.event.order_id].status is PaymentStatus.CAPTURED
    ]
    if captured:
        results = await provider.refund_many([_refund(payment) for _, payment in captured])
        declined = {
            payment.order_id: results[payment.refund_key()].decline_code
            for _, payment in captured
            if not results[payment.refund_key()].approved
        }
        if declined:
            raise RefundDeclined(f"refunds declined: {declined}")
        for delivery, payment in captured:
            payment.refunded(results[payment.refund_key()].operation_id)
            assert payment.amount_cents is not None and payment.currency
            uow.publish(
                PaymentRefunded(
                    order_id=payment.order_id,
                    payment_id=payment.payment_id,
                    amount_cents=payment.amount_cents,
                    currency=payment.currency,
                ),
                aggregate_id=payment.order_id,
                cause=delivery,
            )
    await uow.payments.save_many(payments.values())


async def _charge_ready(
    deliveries: Sequence[Delivery[OrderPlaced] | Delivery[StockReserved]],
    payments: dict[UUID, Payment],
    uow: PaymentsUnitOfWork,
    provider: PaymentProvider,
) -> None:
    """Charge the payments that are ready (in one provider call), say how each went, save all."""
    ready = [
        (delivery, payments[delivery.event.order_id])
        for delivery in deliveries
        if payments[delivery.event.order_id].ready_to_charge
    ]
    if ready:
        results = await provider.charge_many([_charge(payment) for _, payment in ready])
        for delivery, payment in ready:
            result = results[payment.charge_key()]
            if result.approved:
                payment.captured(result.operation_id)
                assert payment.amount_cents is not None and payment.currency
                uow.publish(
                    PaymentCaptured(
                        order_id=payment.order_id,
                        payment_id=payment.payment_id,
                        amount_cents=payment.amount_cents,
                        currency=payment.currency,
                    ),
                    aggregate_id=payment.order_id,
                    cause=delivery,
                )
            else:
                payment.failed(f"{PAYMENT_DECLINED}:{result.decline_code}")
                uow.publish(
                    PaymentFailed(order_id=payment.order_id, reason=PAYMENT_DECLINED),
                    aggregate_id=payment.order_id,
                    cause=delivery,
                )
    await uow.payments.save_many(payments.values())


def _charge(payment: Payment) -> Charge:
    assert payment.payment_token and payment.amount_cents is not None and payment.currency
    return Charge(
        idempotency_key=payment.charge_key(),
        token=payment.payment_token,
        amount_cents=payment.amount_cents,
        currency=payment.currency,
    )


def _refund(payment: Payment) -> Refund:
    assert payment.provider_charge_id and payment.amount_cents is not None and payment.currency
    return Refund(
        idempotency_key=payment.refund_key(),
        charge_id=payment.provider_charge_id,
        amount_cents=payment.amount_cents,
        currency=payment.currency,
    )


def events_for(provider: PaymentProvider) -> dict[str, BatchHandler]:
    """The bus's event handlers, bound to a provider.

    De-duplication: the inbox (``payments``, event id), and then each payment's own state: it
    is charged only while AWAITING and under ``charge:<order_id>``, refunded only while
    CAPTURED and under ``refund:<order_id>``.
    """

    async def orders(deliveries: Sequence[Delivery[OrderPlaced]], uow: PaymentsUnitOfWork) -> None:
        await record_orders(deliveries, uow, provider)

    async def reservations(deliveries: Sequence[Delivery[StockReserved]], uow: PaymentsUnitOfWork) -> None:
        await record_reservations(deliveries, uow, provider)

    async def cancellations(deliveries: Sequence[Delivery[OrderCancelled]], uow: PaymentsUnitOfWork) -> None:
        await refund_or_void(deliveries, uow, provider)

    return {
        OrderPlaced.event_type: orders,
        StockReserved.event_type: reservations,
        OrderCancelled.event_type: cancellations,
    }
