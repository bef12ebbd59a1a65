"""Reads for the routes."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifications.adapters.orm import notifications as n

_COLUMNS = (
    n.c.id,
    n.c.type,
    n.c.order_id,
    n.c.subject,
    n.c.body,
    n.c.email_status,
    n.c.created_at,
    n.c.sent_at,
)


async def notifications_of(
    sessions: async_sessionmaker[AsyncSession], *, customer_id: UUID, limit: int
) -> list[dict[str, Any]]:
    """A customer's notifications, the newest first."""
    async with sessions() as session:
        rows = await session.execute(
            sa.select(*_COLUMNS)
            .where(n.c.customer_id == customer_id)
            .order_by(n.c.created_at.desc())
            .limit(limit)
        )
        return [dict(r) for r in rows.mappings()]
