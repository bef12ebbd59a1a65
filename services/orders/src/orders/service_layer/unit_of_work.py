from __future__ import annotations

from typing import Self

from emporium_events.unit_of_work import UnitOfWork
from orders.adapters.metrics import SagaMetrics
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

    async def commit(self) -> None:
        """Commit, then count the sagas that ended in it: only a committed transition counts,
        and a redelivered reply finds the order already ended (and is skipped by the inbox)."""
        await super().commit()
        saved, self.orders.saved = self.orders.saved, []
        for order in {id(order): order for order in saved}.values():  # saved twice, counted once
            if order.saga_ended is not None:
                SagaMetrics.for_registry().saga_ended(order.saga_ended)
                order.saga_ended = None
