from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from catalog.domain.model import KEEP, Keep


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
    """Change a product: a full replacement (PUT) names every field, a merge patch (PATCH) only
    those it changes; a field left as KEEP keeps its value."""

    product_id: UUID
    name: str | Keep = KEEP
    description: str | Keep = KEEP
    price_cents: int | Keep = KEEP
    currency: str | Keep = KEEP
    category: str | Keep | None = KEEP
