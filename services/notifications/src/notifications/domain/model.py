"""What a customer is told about their order."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

ORDER_CONFIRMED = "order_confirmed"
ORDER_CANCELLED = "order_cancelled"

REASONS = {
    "OUT_OF_STOCK": "some items were out of stock",
    "PAYMENT_DECLINED": "the payment was declined",
}


@dataclass(frozen=True)
class Notification:
    id: UUID
    customer_id: UUID
    order_id: UUID
    type: str
    subject: str
    body: str
    email_to: str | None


def money(cents: int, currency: str) -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"


def order_confirmed(
    *, id: UUID, customer_id: UUID, order_id: UUID, email: str | None, total_cents: int, currency: str
) -> Notification:
    return Notification(
        id=id,
        customer_id=customer_id,
        order_id=order_id,
        type=ORDER_CONFIRMED,
        email_to=email,
        subject=f"Your order {str(order_id)[:8]} is confirmed",
        body=f"Thank you! Order {order_id} is confirmed and paid: {money(total_cents, currency)}.",
    )


def order_cancelled(
    *, id: UUID, customer_id: UUID, order_id: UUID, email: str | None, reason: str
) -> Notification:
    return Notification(
        id=id,
        customer_id=customer_id,
        order_id=order_id,
        type=ORDER_CANCELLED,
        email_to=email,
        subject=f"Your order {str(order_id)[:8]} was cancelled",
        body=f"Order {order_id} was cancelled: {REASONS.get(reason, reason)}. Nothing is charged for it, and any payment taken is refunded.",
    )
