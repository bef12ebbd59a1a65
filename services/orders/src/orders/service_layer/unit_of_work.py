from __future__ import annotations

from typing import Self

from emporium_events.outbox import UnitOfWork
from orders.adapters.repository import CatalogPrices, IdempotencyKeys, OrderRepository


class OrdersUnitOfWork(UnitOfWork):
    orders: OrderRepository
    idempotency: IdempotencyKeys
    prices: CatalogPrices

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.orders = OrderRepository(self.session)
        self.idempotency = IdempotencyKeys(self.session)
        self.prices = CatalogPrices(self.session)
        return self
