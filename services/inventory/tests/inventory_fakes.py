from __future__ import annotations

from collections.abc import Iterable
from copy import deepcopy
from uuid import UUID

from emporium_events.testing import FakeUnitOfWork
from inventory.domain.model import Reservation, ReservationStatus, StockItem


class FakeStock:
    def __init__(self, levels: dict[UUID, int] | None = None) -> None:
        self.items = {p: StockItem(product_id=p, on_hand=n) for p, n in (levels or {}).items()}

    async def ensure(self, *, product_id: UUID, sku: str | None = None) -> None:
        self.items.setdefault(product_id, StockItem(product_id=product_id, sku=sku))

    async def lock(self, *, product_ids: Iterable[UUID]) -> dict[UUID, StockItem]:
        return {p: deepcopy(self.items[p]) for p in product_ids if p in self.items}

    async def save(self, items: Iterable[StockItem]) -> None:
        for item in items:
            self.items[item.product_id] = deepcopy(item)


class FakeReservations:
    def __init__(self) -> None:
        self.rows: dict[UUID, Reservation] = {}

    async def get_many_for_update(self, *, order_ids: Iterable[UUID]) -> dict[UUID, Reservation]:
        return {o: deepcopy(self.rows[o]) for o in order_ids if o in self.rows}

    async def save_many(self, reservations: Iterable[Reservation]) -> None:
        for reservation in reservations:
            self.rows[reservation.order_id] = deepcopy(reservation)

    async def expired_ids(self, *, now, limit: int) -> list[UUID]:
        return [
            r.order_id
            for r in self.rows.values()
            if r.status is ReservationStatus.RESERVED and r.expires_at and r.expires_at <= now
        ][:limit]


class FakeInventoryUoW(FakeUnitOfWork):
    def __init__(self, levels: dict[UUID, int] | None = None) -> None:
        super().__init__()
        self.stock = FakeStock(levels)
        self.reservations = FakeReservations()
