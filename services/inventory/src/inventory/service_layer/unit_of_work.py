from __future__ import annotations

from typing import Self

from emporium_events.unit_of_work import UnitOfWork
from inventory.adapters.repository import ReservationRepository, StockRepository


class InventoryUnitOfWork(UnitOfWork):
    stock: StockRepository
    reservations: ReservationRepository

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        # The per-batch statements run on the psycopg db, the rest on the SQLAlchemy connection.
        self.stock = StockRepository(self.connection, self.db)
        self.reservations = ReservationRepository(self.connection, self.db)
        return self
