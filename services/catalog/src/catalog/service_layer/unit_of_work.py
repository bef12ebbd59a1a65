from __future__ import annotations

from typing import Self

from catalog.adapters.repository import ProductRepository
from emporium_events.unit_of_work import UnitOfWork


class CatalogUnitOfWork(UnitOfWork):
    products: ProductRepository

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.products = ProductRepository(self.connection)
        return self
