"""Periodic work of the orders service: end overdue sagas, forget old idempotency keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from orders.service_layer import handlers
from orders.service_layer.unit_of_work import OrdersUnitOfWork

BATCH = 100


def saga_deadline_sweep(
    uow_factory: Callable[[], OrdersUnitOfWork], *, key_retention: timedelta
) -> Callable[[], Awaitable[int]]:
    """Cancels (TIMEOUT) every order past its deadline. Safe with N replicas: overdue orders are
    claimed with ``SKIP LOCKED``."""

    async def sweep() -> int:
        expired = 0
        while True:
            async with uow_factory() as uow:
                batch = await handlers.expire_overdue(uow, limit=BATCH)
            expired += batch
            if batch < BATCH:
                break
        async with uow_factory() as uow:
            if await uow.idempotency.purge(older_than=datetime.now(UTC) - key_retention):
                await uow.commit()
        return expired

    return sweep
