"""The order and its saga state machine. Plain Python: no I/O, no framework."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from orders.domain.events import Cancelled, Confirmed, DomainEvent, Placed


class OrderStatus(enum.StrEnum):
    PENDING = "PENDING"  # accepted; waiting for inventory
    STOCK_RESERVED = "STOCK_RESERVED"  # every line held; waiting for payment
    CONFIRMED = "CONFIRMED"  # terminal: paid and stock committed
    CANCELLED = "CANCELLED"  # terminal: see cancel_reason

    @property
    def terminal(self) -> bool:
        return self in (OrderStatus.CONFIRMED, OrderStatus.CANCELLED)


class CancelReason(enum.StrEnum):
    OUT_OF_STOCK = "OUT_OF_STOCK"
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    TIMEOUT = "TIMEOUT"  # the saga's deadline passed before it ended
    CUSTOMER_REQUEST = "CUSTOMER_REQUEST"


class Outcome(enum.Enum):
    """What a reply did to the order, so the handler knows what to publish."""

    NOTHING = "nothing"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class OrderNotFound(LookupError):
    def __init__(self, order_id: UUID) -> None:
        super().__init__(f"order {order_id} does not exist")


class OrderAlreadyCancelled(Exception):
    def __init__(self, order_id: UUID) -> None:
        super().__init__(f"order {order_id} is already cancelled")


class IdempotencyKeyReused(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used with a different request; use a new key for a new request"
        )


class UnknownProduct(ValueError):
    def __init__(self, product_ids: list[UUID]) -> None:
        super().__init__("unknown product(s): " + ", ".join(str(p) for p in product_ids))


class MixedCurrencies(ValueError):
    def __init__(self, currencies: set[str]) -> None:
        super().__init__(f"all items of one order must share a currency, got {sorted(currencies)}")


@dataclass(frozen=True)
class Line:
    product_id: UUID
    sku: str
    name: str
    quantity: int
    unit_price_cents: int

    @property
    def total_cents(self) -> int:
        return self.quantity * self.unit_price_cents


@dataclass(frozen=True)
class SagaEnded:
    """The order reached its first terminal status: the saga's outcome, once per order (a later
    cancellation of a confirmed order is a refund, not a second outcome)."""

    status: OrderStatus
    reason: str | None
    seconds: float  # from placing the order


@dataclass(frozen=True)
class HistoryEntry:
    status: str
    at: datetime
    note: str | None = None


@dataclass
class Order:
    id: UUID
    customer_id: UUID
    customer_email: str | None
    lines: list[Line]
    currency: str
    status: OrderStatus
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime | None = None
    cancel_reason: str | None = None
    idempotency_key: str | None = None
    history: list[HistoryEntry] = field(default_factory=list)
    new_history: list[HistoryEntry] = field(default_factory=list, repr=False)
    saga_ended: SagaEnded | None = field(default=None, repr=False, compare=False)
    events: list[DomainEvent] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def place(
        cls,
        *,
        order_id: UUID,
        customer_id: UUID,
        customer_email: str | None,
        lines: list[Line],
        currency: str,
        at: datetime,
        saga_timeout: timedelta,
        payment_token: str,
        idempotency_key: str | None = None,
    ) -> Order:
        order = cls(
            id=order_id,
            customer_id=customer_id,
            customer_email=customer_email,
            lines=lines,
            currency=currency,
            status=OrderStatus.PENDING,
            created_at=at,
            updated_at=at,
            deadline_at=at + saga_timeout,
            idempotency_key=idempotency_key,
        )
        order._record(OrderStatus.PENDING.value, at)
        order.events.append(Placed(payment_token=payment_token))
        return order

    @property
    def total_cents(self) -> int:
        return sum(line.total_cents for line in self.lines)

    def stock_reserved(self, at: datetime) -> bool:
        """True when the state changed (a reply for a finished or advanced saga changes nothing)."""
        if self.status is not OrderStatus.PENDING:
            return False
        self._move(OrderStatus.STOCK_RESERVED, at)
        return True

    def payment_captured(self, at: datetime) -> Outcome:
        """Payment is only taken after every line was reserved, so a capture confirms the order
        even if orders has not yet read the StockReserved that preceded it on another topic.

        A capture that comes after the deadline does not confirm: the saga is over, the order is
        cancelled (TIMEOUT) and the cancellation makes payments refund. This also keeps
        inventory's reservation expiry (which is longer than the deadline) safe.
        """
        if self.status.terminal:
            return Outcome.NOTHING
        if self.overdue(at):
            self.cancel(CancelReason.TIMEOUT, at)
            return Outcome.CANCELLED
        self._move(OrderStatus.CONFIRMED, at)
        self.events.append(Confirmed())
        return Outcome.CONFIRMED

    def overdue(self, at: datetime) -> bool:
        return self.deadline_at is not None and at >= self.deadline_at and not self.status.terminal

    def expire(self, at: datetime) -> bool:
        """The deadline passed with the saga still running: cancel it (compensations follow)."""
        return self.overdue(at) and self.cancel(CancelReason.TIMEOUT, at)

    def cancel(self, reason: str, at: datetime) -> bool:
        """A saga failure: only an order still in flight is cancelled."""
        if self.status.terminal:
            return False
        self._cancelled(reason, at)
        return True

    def cancel_on_request(self, at: datetime) -> None:
        """The customer's (or an admin's) cancellation: allowed in flight and after confirmation,
        where the cancellation makes payments refund and inventory put the stock back."""
        if self.status is OrderStatus.CANCELLED:
            raise OrderAlreadyCancelled(self.id)
        self._cancelled(CancelReason.CUSTOMER_REQUEST, at)

    def _cancelled(self, reason: str, at: datetime) -> None:
        self.cancel_reason = reason
        self._move(OrderStatus.CANCELLED, at, note=reason)
        self.events.append(Cancelled(reason=reason))

    def note(self, what: str, at: datetime) -> None:
        """A step of the saga that does not change the status (a compensation done, say)."""
        self._record(what, at)

    def _move(self, status: OrderStatus, at: datetime, note: str | None = None) -> None:
        if status.terminal and not self.status.terminal:
            seconds = (at - self.created_at).total_seconds()
            self.saga_ended = SagaEnded(status=status, reason=self.cancel_reason, seconds=seconds)
        self.status = status
        self.updated_at = at
        self._record(status.value, at, note)

    def _record(self, status: str, at: datetime, note: str | None = None) -> None:
        entry = HistoryEntry(status=status, at=at, note=note)
        self.history.append(entry)
        self.new_history.append(entry)
