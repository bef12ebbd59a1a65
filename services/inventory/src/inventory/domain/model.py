"""Stock and reservations. The no-oversell rule lives here; the database checks it again."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID


class InsufficientStock(Exception):
    def __init__(self, product_id: UUID, wanted: int, available: int) -> None:
        super().__init__(f"product {product_id}: wanted {wanted}, available {available}")
        self.product_id = product_id


class StockNotFound(LookupError):
    def __init__(self, product_id: UUID) -> None:
        super().__init__(f"no stock record for product {product_id}")


class StockBelowReserved(ValueError):
    def __init__(self, product_id: UUID, on_hand: int, reserved: int) -> None:
        super().__init__(
            f"product {product_id}: on_hand {on_hand} would be below the {reserved} units reserved by open orders"
        )


@dataclass
class StockItem:
    product_id: UUID
    on_hand: int = 0
    reserved: int = 0
    sku: str | None = None

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def set_on_hand(self, on_hand: int) -> None:
        if on_hand < self.reserved:
            raise StockBelowReserved(self.product_id, on_hand, self.reserved)
        self.on_hand = on_hand

    def reserve(self, quantity: int) -> None:
        if quantity > self.available:
            raise InsufficientStock(self.product_id, quantity, self.available)
        self.reserved += quantity

    def release(self, quantity: int) -> None:
        self.reserved -= min(quantity, self.reserved)

    def commit(self, quantity: int) -> None:
        """A reservation becomes a permanent deduction."""
        self.reserved -= quantity
        self.on_hand -= quantity

    def restock(self, quantity: int) -> None:
        self.on_hand += quantity


class ReservationStatus(enum.StrEnum):
    RESERVED = "RESERVED"
    FAILED = "FAILED"
    COMMITTED = "COMMITTED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"  # released by its TTL: no confirmation came in time
    RETURNED = "RETURNED"


@dataclass
class Reservation:
    order_id: UUID
    status: ReservationStatus
    lines: dict[UUID, int] = field(default_factory=dict)
    reason: str | None = None
    expires_at: datetime | None = None


def merge_lines(lines: list[tuple[UUID, int]]) -> dict[UUID, int]:
    """Quantities per product, in product-id order (locks are always taken in this order)."""
    merged: dict[UUID, int] = {}
    for product_id, quantity in lines:
        merged[product_id] = merged.get(product_id, 0) + quantity
    return dict(sorted(merged.items(), key=lambda kv: str(kv[0])))


def reserve_all(items: dict[UUID, StockItem], wanted: dict[UUID, int]) -> None:
    """Reserve every line or none: raises InsufficientStock before changing anything."""
    for product_id, quantity in wanted.items():
        item = items.get(product_id)
        available = item.available if item else 0
        if quantity > available:
            raise InsufficientStock(product_id, quantity, available)
    for product_id, quantity in wanted.items():
        items[product_id].reserve(quantity)
