from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from inventory.adapters.orm import stock

_COLUMNS = (
    stock.c.product_id,
    stock.c.on_hand,
    stock.c.reserved,
    (stock.c.on_hand - stock.c.reserved).label("available"),
)


async def stock_levels(
    sessions: async_sessionmaker[AsyncSession], *, product_ids: Sequence[UUID]
) -> list[dict[str, Any]]:
    async with sessions() as session:
        rows = (
            await session.execute(sa.select(*_COLUMNS).where(stock.c.product_id.in_(product_ids)))
        ).mappings()
        return [dict(r) for r in rows]
