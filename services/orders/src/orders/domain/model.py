"""The order and its saga state machine. Plain Python: no I/O, no framework."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID


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


class OrderNotFound(LookupError):
    def __init__(self, order_id: UUID) -> None:
        super().__init__(f"order {order_id} does not exist")


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
    cancel_reason: str | None = None
    history: list[HistoryEntry] = field(default_factory=list)
    new_history: list[HistoryEntry] = field(default_factory=list, repr=False)

    @classmethod
    def place(
        cls, *, order_id: UUID, customer_id: UUID, customer_email: str | None, lines: list[Line], currency: str,
        at: datetime,
    ) -> Order:
        order = cls(
            id=order_id, customer_id=customer_id, customer_email=customer_email, lines=lines, currency=currency,
            status=OrderStatus.PENDING, created_at=at, updated_at=at,
        )
        order._record(OrderStatus.PENDING.value, at)
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

    def payment_captured(self, at: datetime) -> bool:
        # Payment is only taken after every line was reserved, so a capture confirms the order
        # even if orders has not yet read the StockReserved that preceded it on another topic.
        if self.status.terminal:
            return False
        self._move(OrderStatus.CONFIRMED, at)
        return True

    def cancel(self, reason: str, at: datetime) -> bool:
        if self.status.terminal:
            return False
        self.cancel_reason = reason
        self._move(OrderStatus.CANCELLED, at, note=reason)
        return True

    def note(self, what: str, at: datetime) -> None:
        """A step of the saga that does not change the status (a compensation done, say)."""
        self._record(what, at)

    def _move(self, status: OrderStatus, at: datetime, note: str | None = None) -> None:
        self.status = status
        self.updated_at = at
        self._record(status.value, at, note)

    def _record(self, status: str, at: datetime, note: str | None = None) -> None:
        entry = HistoryEntry(status=status, at=at, note=note)
        self.history.append(entry)
        self.new_history.append(entry)
