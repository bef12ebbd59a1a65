"""Payments' handlers (called by the consumer inside the inbox transaction).

The charge needs two facts that arrive on two topics in either order: the order's amount and
card token (OrderPlaced) and its stock reservation (StockReserved). Whichever comes second
charges. The provider call carries the idempotency key ``charge:<order_id>``, so a redelivery,
or a crash between the provider's answer and our commit, never charges twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from emporium_events.bus import BatchHandler, one_by_one
from emporium_events.contracts import (
    OrderCancelled,
    OrderPlaced,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    StockReserved,
)
from emporium_events.envelope import Envelope
from payments.adapters.provider import PaymentProvider
from payments.domain.model import PAYMENT_DECLINED, Payment, PaymentStatus
from payments.service_layer.unit_of_work import PaymentsUnitOfWork


async def record_order(event: OrderPlaced, uow: PaymentsUnitOfWork, provider: PaymentProvider) -> None:
    payment = await uow.payments.get_or_start(order_id=event.order_id)
    payment.customer_id = event.customer_id
    payment.amount_cents, payment.currency = event.total_cents, event.currency
    payment.payment_token = event.payment_token
    payment.client_key = event.idempotency_key
    await _charge_if_ready(payment, uow, provider)


async def record_reservation(
    event: StockReserved, uow: PaymentsUnitOfWork, provider: PaymentProvider
) -> None:
    payment = await uow.payments.get_or_start(order_id=event.order_id)
    payment.stock_reserved = True
    await _charge_if_ready(payment, uow, provider)


class RefundDeclined(Exception):
    """The provider refused a refund: retried, then dead-lettered for a person to look at."""


async def refund_or_void(event: OrderCancelled, uow: PaymentsUnitOfWork, provider: PaymentProvider) -> None:
    """Compensation: refund a captured payment; make sure an uncharged one is never charged."""
    payment = await uow.payments.get_or_start(order_id=event.order_id)
    if payment.status is PaymentStatus.AWAITING:
        # A charge may have been made whose record never committed (a crash, a dead letter):
        # ask the provider before deciding nothing was taken.
        earlier = await provider.lookup(idempotency_key=payment.charge_key())
        if earlier is None or not earlier.approved:
            payment.voided()
            await uow.payments.save(payment)
            return
        payment.captured(earlier.operation_id)
        payment.amount_cents = (
            payment.amount_cents if payment.amount_cents is not None else earlier.amount_cents
        )
        payment.currency = payment.currency or earlier.currency
    if payment.status is PaymentStatus.CAPTURED:
        assert payment.provider_charge_id and payment.amount_cents is not None and payment.currency
        result = await provider.refund(
            idempotency_key=f"refund:{payment.order_id}",
            charge_id=payment.provider_charge_id,
            amount_cents=payment.amount_cents,
            currency=payment.currency,
        )
        if not result.approved:
            raise RefundDeclined(f"refund of order {payment.order_id} declined: {result.decline_code}")
        payment.refunded(result.operation_id)
        uow.publish(
            PaymentRefunded(
                order_id=payment.order_id,
                payment_id=payment.payment_id,
                amount_cents=payment.amount_cents,
                currency=payment.currency,
            ),
            aggregate_id=payment.order_id,
        )
    await uow.payments.save(payment)


async def _charge_if_ready(payment: Payment, uow: PaymentsUnitOfWork, provider: PaymentProvider) -> None:
    if payment.ready_to_charge:
        assert payment.payment_token and payment.amount_cents is not None and payment.currency
        result = await provider.charge(
            idempotency_key=payment.charge_key(),
            token=payment.payment_token,
            amount_cents=payment.amount_cents,
            currency=payment.currency,
        )
        if result.approved:
            payment.captured(result.operation_id)
            uow.publish(
                PaymentCaptured(
                    order_id=payment.order_id,
                    payment_id=payment.payment_id,
                    amount_cents=payment.amount_cents,
                    currency=payment.currency,
                ),
                aggregate_id=payment.order_id,
            )
        else:
            payment.failed(f"{PAYMENT_DECLINED}:{result.decline_code}")
            uow.publish(
                PaymentFailed(order_id=payment.order_id, reason=PAYMENT_DECLINED),
                aggregate_id=payment.order_id,
            )
    await uow.payments.save(payment)


def events_for(provider: PaymentProvider) -> dict[str, BatchHandler]:
    """The bus's event handlers, bound to a provider."""

    def bind(fn: Callable[[Any, PaymentsUnitOfWork, PaymentProvider], Awaitable[None]]) -> BatchHandler:
        async def handle(event: Any, _: Envelope, uow: PaymentsUnitOfWork) -> None:
            await fn(event, uow, provider)

        handle.__name__ = fn.__name__
        return one_by_one(handle)

    return {
        OrderPlaced.event_type: bind(record_order),
        StockReserved.event_type: bind(record_reservation),
        OrderCancelled.event_type: bind(refund_or_void),
    }
