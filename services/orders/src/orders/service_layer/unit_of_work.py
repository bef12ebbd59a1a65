from __future__ import annotations

from typing import Self

from emporium_events.unit_of_work import UnitOfWork
from orders.adapters.metrics import SagaMetrics
from orders.adapters.repository import CatalogPrices, IdempotencyKeys, OrderRepository
from orders.service_layer import messages


class OrdersUnitOfWork(UnitOfWork):
    orders: OrderRepository
    idempotency: IdempotencyKeys
    prices: CatalogPrices

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        # The statements every order pays for run on psycopg (``db``), the cold ones on
        # SQLAlchemy (``connection``): one transaction, see orders.adapters.repository.
        self.orders = OrderRepository(self.db, connection=self.connection)
        self.idempotency = IdempotencyKeys(self.db, connection=self.connection)
        self.prices = CatalogPrices(self.db)
        return self

    async def collect(self) -> None:
        """Each order's recorded events become contracts in the outbox, caused by the event
        that changed the order; then the orders, the key's answer and the outbox rows are
        written in one round trip, in psycopg's pipeline mode (none of these statements reads
        another's result): a POST with a key makes 5 round trips instead of 7, a reply batch 5
        instead of 6, counted on the wire. COMMIT stays outside: inside, it would not save one
        (leaving a pipeline waits for the server too). A statement that fails raises here, at
        the latest as the pipeline ends, and the unit of work rolls everything back."""
        events, self.orders.events = self.orders.events, []
        for order, event, cause in events:
            self.publish(messages.contract(order, event), aggregate_id=order.id, cause=cause)
        if not (self.orders.seen or self.idempotency.pending):
            return  # at most the outbox rows: one statement, which the commit sends alone
        async with self.db.pipeline():
            await self.orders.write()
            await self.idempotency.write()
            await self.flush()

    async def commit(self) -> None:
        """Commit, then count the sagas that ended in it: only a committed transition counts,
        and a redelivered reply finds the order already ended (and is skipped by the inbox)."""
        await super().commit()
        seen, self.orders.seen = self.orders.seen, {}
        for order in seen.values():
            if order.saga_ended is not None:
                SagaMetrics.for_registry().saga_ended(order.saga_ended)
                order.saga_ended = None
