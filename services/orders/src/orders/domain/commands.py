from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True, kw_only=True)
class RequestedLine:
    product_id: UUID
    quantity: int


@dataclass(frozen=True, kw_only=True)
class PlaceOrder:
    order_id: UUID
    customer_id: UUID
    customer_email: str | None
    lines: tuple[RequestedLine, ...]
    payment_token: str
