"""Reads for the API, straight from the tables (no aggregate, no lock)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments.adapters.orm import payments


async def payments_of(sessions: async_sessionmaker[AsyncSession], *, order_id: UUID) -> list[dict[str, Any]]:
    async with sessions() as session:
        rows = (await session.execute(sa.select(payments).where(payments.c.order_id == order_id))).mappings()
        return [dict(r) for r in rows]
