"""Read queries (no aggregates, no locks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from catalog.adapters.orm import products

COLUMNS = (
    products.c.id,
    products.c.sku,
    products.c.name,
    products.c.description,
    products.c.price_cents,
    products.c.currency,
    products.c.category,
    products.c.created_at,
    products.c.updated_at,
)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_products(
    sessions: async_sessionmaker[AsyncSession],
    *,
    q: str | None,
    ids: Sequence[UUID] | None,
    category: str | None,
    page: int,
    page_size: int,
) -> tuple[list[dict[str, Any]], int]:
    where = []
    if q:
        pattern = f"%{_escape_like(q)}%"
        where.append(sa.or_(products.c.name.ilike(pattern), products.c.sku.ilike(pattern)))
    if ids is not None:
        where.append(products.c.id.in_(ids))
    if category:
        where.append(products.c.category == category)
    async with sessions() as session:
        total = (
            await session.execute(sa.select(sa.func.count()).select_from(products).where(*where))
        ).scalar_one()
        rows = (
            (
                await session.execute(
                    sa.select(*COLUMNS)
                    .where(*where)
                    .order_by(products.c.name, products.c.id)
                    .limit(page_size)
                    .offset((page - 1) * page_size)
                )
            )
            .mappings()
            .all()
        )
    return [dict(r) for r in rows], total


async def get_product(
    sessions: async_sessionmaker[AsyncSession], *, product_id: UUID
) -> dict[str, Any] | None:
    async with sessions() as session:
        row = (
            (await session.execute(sa.select(*COLUMNS).where(products.c.id == product_id))).mappings().first()
        )
    return dict(row) if row else None
