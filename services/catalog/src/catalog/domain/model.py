"""Products: plain Python, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Final
from uuid import UUID


class Keep(Enum):
    """An update's placeholder for a field it does not name: that field keeps its value."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


class ProductNotFound(LookupError):
    def __init__(self, product_id: UUID) -> None:
        super().__init__(f"product {product_id} does not exist")


class DuplicateSku(ValueError):
    def __init__(self, sku: str) -> None:
        super().__init__(f"a product with sku {sku!r} already exists")


@dataclass
class Product:
    id: UUID
    sku: str
    name: str
    description: str
    price_cents: int
    currency: str
    category: str | None
    created_at: datetime
    updated_at: datetime

    def revise(
        self,
        *,
        name: str | Keep = KEEP,
        description: str | Keep = KEEP,
        price_cents: int | Keep = KEEP,
        currency: str | Keep = KEEP,
        category: str | Keep | None = KEEP,
        at: datetime,
    ) -> bool:
        """Change the fields given; a field left as KEEP stays as it is. The sku never changes.

        True when anything changed (and ``updated_at`` moved); an update that changes nothing
        leaves the product, and its ``updated_at``, alone.
        """
        given = {
            "name": name,
            "description": description,
            "price_cents": price_cents,
            "currency": currency,
            "category": category,
        }
        changes = {k: v for k, v in given.items() if not isinstance(v, Keep) and getattr(self, k) != v}
        for field, value in changes.items():
            setattr(self, field, value)
        if changes:
            self.updated_at = at
        return bool(changes)
