"""Periodic work of the orders service: end overdue sagas, forget old idempotency keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from emporium_events.bus import MessageBus
from orders.domain.commands import ExpireOverdue, ForgetIdempotencyKeys

BATCH = 100


def saga_deadline_sweep(bus: MessageBus[Any], *, key_retention: timedelta) -> Callable[[], Awaitable[int]]:
    """Cancels (TIMEOUT) every order past its deadline, a batch per transaction. Safe with N
    replicas: overdue orders are claimed with ``SKIP LOCKED``."""

    async def sweep() -> int:
        expired = 0
        while True:
            batch: int = await bus.handle(ExpireOverdue(limit=BATCH))
            expired += batch
            if batch < BATCH:
                break
        await bus.handle(ForgetIdempotencyKeys(older_than=key_retention))
        return expired

    return sweep
