from __future__ import annotations

from collections.abc import Iterable
from copy import deepcopy
from types import SimpleNamespace
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

    async def get_for_update(self, *, order_id: UUID, with_history: bool = False) -> Order | None:
        order = deepcopy(self.rows.get(order_id))
        if order is not None and not with_history:
            order.history = []
        return order

    async def save(self, order: Order) -> None:
        """Like the table: the history is append-only, whatever the loaded order held of it."""
        kept = deepcopy(order)
        kept.saga_ended = None  # not stored: the unit of work counts it after the commit
        kept.history = self.rows[order.id].history + list(order.new_history)
        kept.new_history = []
        order.new_history.clear()
        self.rows[order.id] = kept

    async def overdue_ids(self, *, now, limit: int) -> list[UUID]:
        return [o.id for o in self.rows.values() if o.overdue(now)][:limit]


class FakeKeys:
    def __init__(self) -> None:
        self.rows: dict[tuple[UUID, str], SimpleNamespace] = {}

    async def find(self, *, customer_id: UUID, key: str) -> SimpleNamespace | None:
        return self.rows.get((customer_id, key))

    async def claim(self, *, customer_id: UUID, key: str, request_hash: str) -> bool:
        if (customer_id, key) in self.rows:
            return False
        self.rows[(customer_id, key)] = SimpleNamespace(request_hash=request_hash, status_code=0, response={})
        return True

    async def record(self, *, customer_id: UUID, key: str, status_code: int, response: dict) -> None:
        row = self.rows[(customer_id, key)]
        row.status_code, row.response = status_code, response


class FakePrices:
    def __init__(self) -> None:
        self.rows: dict[UUID, PricedProduct] = {}

    async def get(self, product_ids: list[UUID]) -> dict[UUID, PricedProduct]:
        return {p: self.rows[p] for p in product_ids if p in self.rows}

    async def put(self, product: PricedProduct) -> None:
        self.rows[product.product_id] = product


class FakeOrdersUoW(FakeUnitOfWork):
    def __init__(self) -> None:
        super().__init__()
        self.orders = FakeOrders()
        self.idempotency = FakeKeys()
        self.prices = FakePrices()


class FakePriceList:
    def __init__(self, *products: PricedProduct) -> None:
        self.products = {p.product_id: p for p in products}
        self.asked: list[list[UUID]] = []

    async def prices(self, product_ids: Iterable[UUID]) -> dict[UUID, PricedProduct]:
        ids = list(product_ids)
        self.asked.append(ids)
        return {p: self.products[p] for p in ids if p in self.products}
