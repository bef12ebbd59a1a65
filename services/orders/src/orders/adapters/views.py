"""Read models for the API: an order with its lines and history, a customer's orders."""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from orders.adapters.orm import order_history, order_lines, orders


async def order_details(
    sessions: async_sessionmaker[AsyncSession], *, order_ids: list[UUID]
) -> list[dict[str, Any]]:
    if not order_ids:
        return []
    async with sessions() as session:
        heads = (
            (
                await session.execute(
                    sa.select(orders).where(orders.c.id.in_(order_ids)).order_by(orders.c.created_at.desc())
                )
            )
            .mappings()
            .all()
        )
        lines = (
            (
                await session.execute(
                    sa.select(order_lines)
                    .where(order_lines.c.order_id.in_(order_ids))
                    .order_by(order_lines.c.line_no)
                )
            )
            .mappings()
            .all()
        )
        history = (
            (
                await session.execute(
                    sa.select(order_history)
                    .where(order_history.c.order_id.in_(order_ids))
                    .order_by(order_history.c.id)
                )
            )
            .mappings()
            .all()
        )
    lines_by: dict[UUID, list[dict[str, Any]]] = defaultdict(list)
    for r in lines:
        lines_by[r["order_id"]].append(
            {
                "product_id": r["product_id"],
                "sku": r["sku"],
                "name": r["name"],
                "quantity": r["quantity"],
                "unit_price_cents": r["unit_price_cents"],
                "total_cents": r["quantity"] * r["unit_price_cents"],
            }
        )
    history_by: dict[UUID, list[dict[str, Any]]] = defaultdict(list)
    for h in history:
        history_by[h["order_id"]].append({"status": h["status"], "at": h["at"], "note": h["note"]})
    return [{**dict(h), "items": lines_by[h["id"]], "history": history_by[h["id"]]} for h in heads]


async def customer_order_ids(
    sessions: async_sessionmaker[AsyncSession], *, customer_id: UUID, limit: int, offset: int
) -> list[UUID]:
    async with sessions() as session:
        rows = await session.execute(
            sa.select(orders.c.id)
            .where(orders.c.customer_id == customer_id)
            .order_by(orders.c.created_at.desc())
            .limit(limit)
            .offset(offset)
        )
        return list(rows.scalars())
