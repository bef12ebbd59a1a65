from __future__ import annotations

from collections.abc import Callable, Iterable
from copy import deepcopy
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from emporium_events.bus import Delivery, MessageBus
from emporium_events.testing import FakeUnitOfWork
from orders.adapters.catalog import PricedProduct
from orders.domain.model import Order
from orders.service_layer import handlers, messages


class FakeOrders:
    """Writes at once, and publishes the order's recorded events as the real unit of work does
    at its commit (mapped by ``orders.service_layer.messages``)."""

    def __init__(self, publish: Callable[..., Any]) -> None:
        self.rows: dict[UUID, Order] = {}
        self._publish = publish

    def add(self, order: Order, *, cause: Any = None) -> None:
        self._emit(order, cause)
        order.new_history.clear()
        self.rows[order.id] = deepcopy(order)

    async def get_for_update(self, *, order_id: UUID, with_history: bool = False) -> Order | None:
        order = deepcopy(self.rows.get(order_id))
        if order is not None and not with_history:
            order.history = []
        return order

    async def get_many_for_update(
        self, *, order_ids: Iterable[UUID], with_history: bool = False
    ) -> dict[UUID, Order]:
        found = {o: await self.get_for_update(order_id=o, with_history=with_history) for o in order_ids}
        return {o: order for o, order in found.items() if order is not None}

    def save(self, order: Order, *, cause: Any = None) -> None:
        """Like the table: the history is append-only, whatever the loaded order held of it."""
        self._emit(order, cause)
        kept = deepcopy(order)
        kept.saga_ended = None  # not stored: the unit of work counts it after the commit
        kept.history = self.rows[order.id].history + list(order.new_history)
        kept.new_history = []
        order.new_history.clear()
        self.rows[order.id] = kept

    def _emit(self, order: Order, cause: Any) -> None:
        for event in order.events:
            self._publish(messages.contract(order, event), aggregate_id=order.id, cause=cause)
        order.events.clear()

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
        self.orders = FakeOrders(self.publish)
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


async def deliver(handler: Callable[..., Any], event: Any, envelope: Any, uow: Any) -> None:
    """A batch handler given one event, as the bus would."""
    await handler([Delivery(event, envelope)], uow)


def bus_for(
    uow: Any, catalog: Any = None, *, saga_timeout: Any = None, render: Any = None
) -> MessageBus[Any]:
    """The service's bus over a fake unit of work (it commits, as the routes' bus does)."""
    return MessageBus(
        lambda: uow,
        commands=handlers.COMMANDS,
        dependencies={"catalog": catalog, "saga_timeout": saga_timeout, "render": render},
    )
