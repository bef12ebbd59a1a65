from __future__ import annotations

from collections.abc import Iterable
from copy import deepcopy
from uuid import UUID

from emporium_events.testing import FakeUnitOfWork
from orders.adapters.catalog import PricedProduct
from orders.domain.model import Order


class FakeOrders:
    def __init__(self) -> None:
        self.rows: dict[UUID, Order] = {}

    async def add(self, order: Order) -> None:
        order.new_history.clear()
        self.rows[order.id] = deepcopy(order)

    async def get_for_update(self, *, order_id: UUID) -> Order | None:
        return deepcopy(self.rows.get(order_id))

    async def save(self, order: Order) -> None:
        order.new_history.clear()
        self.rows[order.id] = deepcopy(order)


class FakeOrdersUoW(FakeUnitOfWork):
    def __init__(self) -> None:
        super().__init__()
        self.orders = FakeOrders()


class FakePriceList:
    def __init__(self, *products: PricedProduct) -> None:
        self.products = {p.product_id: p for p in products}

    async def prices(self, product_ids: Iterable[UUID]) -> dict[UUID, PricedProduct]:
        return {p: self.products[p] for p in product_ids if p in self.products}
