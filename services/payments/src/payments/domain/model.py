"""A payment per order: charged once both the order's details and its stock reservation are known."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from uuid import UUID


class PaymentStatus(enum.StrEnum):
    AWAITING = "AWAITING"  # waiting for the order's details or its stock reservation
    CAPTURED = "CAPTURED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"
    VOIDED = "VOIDED"  # the order was cancelled before any charge


PAYMENT_DECLINED = "PAYMENT_DECLINED"


@dataclass
class Payment:
    order_id: UUID
    payment_id: UUID
    status: PaymentStatus = PaymentStatus.AWAITING
    customer_id: UUID | None = None
    amount_cents: int | None = None
    currency: str | None = None
    payment_token: str | None = None
    stock_reserved: bool = False
    provider_charge_id: str | None = None
    provider_refund_id: str | None = None
    failure_reason: str | None = None
    client_key: str | None = None  # the customer's Idempotency-Key for the order, if any
    provider_key: str | None = None

    def record_order(
        self,
        *,
        customer_id: UUID,
        amount_cents: int,
        currency: str,
        payment_token: str,
        client_key: str | None,
    ) -> None:
        """The order's details: who pays what, with which card."""
        self.customer_id, self.amount_cents, self.currency = customer_id, amount_cents, currency
        self.payment_token, self.client_key = payment_token, client_key

    def record_reservation(self) -> None:
        """The order's stock is reserved: the other fact a charge waits for."""
        self.stock_reserved = True

    @property
    def ready_to_charge(self) -> bool:
        return (
            self.status is PaymentStatus.AWAITING and self.stock_reserved and self.payment_token is not None
        )

    def charge_key(self) -> str:
        """The provider's idempotency key: one charge per order, whatever is redelivered.

        It is the order id, which orders keeps 1:1 with the customer's Idempotency-Key. Not
        the customer's key itself: it is unknown when a cancellation must look a charge up
        before the order's details arrived, and a key reused after its retention would
        return an old charge for a new order.
        """
        if self.provider_key is None:
            self.provider_key = f"charge:{self.order_id}"
        return self.provider_key

    def refund_key(self) -> str:
        """The provider's idempotency key for the refund: one refund per order."""
        return f"refund:{self.order_id}"

    def captured(self, charge_id: str) -> None:
        self.status, self.provider_charge_id = PaymentStatus.CAPTURED, charge_id

    def failed(self, reason: str) -> None:
        self.status, self.failure_reason = PaymentStatus.FAILED, reason

    def refunded(self, refund_id: str) -> None:
        self.status, self.provider_refund_id = PaymentStatus.REFUNDED, refund_id

    def voided(self) -> None:
        self.status = PaymentStatus.VOIDED
