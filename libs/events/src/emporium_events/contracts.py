"""Versioned event contracts shared by every Emporium service.

Each contract is a frozen pydantic model with a dotted ``event_type`` and an integer ``version``.
Consumers ignore fields they do not know; a contract grows only by adding optional fields, and a
breaking change is a new class with ``version = 2`` published beside the old one
(``tests/contract`` keeps JSON Schema snapshots and fails on an incompatible change).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class Contract(BaseModel):
    """Base of every payload: frozen, tolerant of unknown fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Event(Contract):
    event_type: ClassVar[str]
    version: ClassVar[int] = 1


# --- shared pieces -----------------------------------------------------------------------------


class OrderLine(Contract):
    product_id: UUID
    sku: str
    quantity: int = Field(gt=0)
    unit_price_cents: int = Field(ge=0)


class StockLine(Contract):
    product_id: UUID
    quantity: int = Field(gt=0)


# --- catalog -----------------------------------------------------------------------------------


class ProductCreated(Event):
    event_type = "catalog.ProductCreated"
    product_id: UUID
    sku: str
    name: str
    price_cents: int
    currency: str
    category: str | None = None


class ProductUpdated(Event):
    event_type = "catalog.ProductUpdated"
    product_id: UUID
    sku: str
    name: str
    price_cents: int
    currency: str
    category: str | None = None


# --- orders ------------------------------------------------------------------------------------


class OrderPlaced(Event):
    event_type = "orders.OrderPlaced"
    order_id: UUID
    customer_id: UUID
    customer_email: str | None = None
    lines: tuple[OrderLine, ...]
    total_cents: int
    currency: str
    payment_token: str
    placed_at: datetime
    idempotency_key: str | None = None  # the client's key; payments makes it the provider's key


class OrderConfirmed(Event):
    event_type = "orders.OrderConfirmed"
    order_id: UUID
    customer_id: UUID
    customer_email: str | None = None
    lines: tuple[StockLine, ...]
    total_cents: int
    currency: str


class OrderCancelled(Event):
    event_type = "orders.OrderCancelled"
    order_id: UUID
    customer_id: UUID
    customer_email: str | None = None
    lines: tuple[StockLine, ...]
    reason: str
    total_cents: int
    currency: str


# --- inventory ---------------------------------------------------------------------------------


class StockReserved(Event):
    event_type = "inventory.StockReserved"
    order_id: UUID
    lines: tuple[StockLine, ...]


class StockReservationFailed(Event):
    event_type = "inventory.StockReservationFailed"
    order_id: UUID
    reason: str
    product_ids: tuple[UUID, ...] = ()


class StockReleased(Event):
    event_type = "inventory.StockReleased"
    order_id: UUID
    lines: tuple[StockLine, ...]


# --- payments ----------------------------------------------------------------------------------


class PaymentCaptured(Event):
    event_type = "payments.PaymentCaptured"
    order_id: UUID
    payment_id: UUID
    amount_cents: int
    currency: str


class PaymentFailed(Event):
    event_type = "payments.PaymentFailed"
    order_id: UUID
    reason: str


class PaymentRefunded(Event):
    event_type = "payments.PaymentRefunded"
    order_id: UUID
    payment_id: UUID
    amount_cents: int
    currency: str


ALL_EVENTS: tuple[type[Event], ...] = (
    ProductCreated,
    ProductUpdated,
    OrderPlaced,
    OrderConfirmed,
    OrderCancelled,
    StockReserved,
    StockReservationFailed,
    StockReleased,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
)

REGISTRY: dict[tuple[str, int], type[Event]] = {(e.event_type, e.version): e for e in ALL_EVENTS}


def contract_for(event_type: str, version: int) -> type[Event] | None:
    """The contract class for a dotted type and version, or None when this build does not know it."""
    return REGISTRY.get((event_type, version))
