from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID


@dataclass(frozen=True, kw_only=True)
class RequestedLine:
    product_id: UUID
    quantity: int


@dataclass(frozen=True, kw_only=True)
class IdempotencyKey:
    """A client's ``Idempotency-Key`` and a digest of the request it came with."""

    key: str
    request_hash: str


@dataclass(frozen=True, kw_only=True)
class PlaceOrder:
    order_id: UUID
    customer_id: UUID
    customer_email: str | None
    lines: tuple[RequestedLine, ...]
    payment_token: str
    idempotency: IdempotencyKey | None = None


@dataclass(frozen=True, kw_only=True)
class CancelOrder:
    order_id: UUID
    requested_by: UUID
    by_admin: bool = False
    idempotency: IdempotencyKey | None = None


@dataclass(frozen=True, kw_only=True)
class ExpireOverdue:
    """Cancel (TIMEOUT) up to ``limit`` orders whose saga outlived its deadline."""

    limit: int = 100


@dataclass(frozen=True, kw_only=True)
class ForgetIdempotencyKeys:
    older_than: timedelta
