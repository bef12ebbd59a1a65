"""Products: plain Python, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


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
        name: str,
        description: str,
        price_cents: int,
        currency: str,
        category: str | None,
        at: datetime,
    ) -> None:
        self.name, self.description, self.price_cents = name, description, price_cents
        self.currency, self.category, self.updated_at = currency, category, at
