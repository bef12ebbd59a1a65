from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True, kw_only=True)
class CreateProduct:
    product_id: UUID
    sku: str
    name: str
    description: str
    price_cents: int
    currency: str
    category: str | None


@dataclass(frozen=True, kw_only=True)
class UpdateProduct:
    product_id: UUID
    name: str
    description: str
    price_cents: int
    currency: str
    category: str | None
