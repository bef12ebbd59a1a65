"""What inventory is asked to do, by an operator's route or its own schedule."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True)
class SetStockLevel:
    product_id: UUID
    on_hand: int


@dataclass(frozen=True)
class ExpireReservations:
    """Release held reservations whose TTL passed (their saga died or stalled)."""

    limit: int = 100
