"""The Order aggregate, loaded whole (order, lines, history) and saved whole."""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from orders.adapters.orm import order_history, order_lines, orders
from orders.domain.model import HistoryEntry, Line, Order, OrderStatus


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, order: Order) -> None:
        await self._session.execute(
            sa.insert(orders).values(
                id=order.id, customer_id=order.customer_id, customer_email=order.customer_email,
                status=order.status.value, total_cents=order.total_cents, currency=order.currency,
                cancel_reason=order.cancel_reason, created_at=order.created_at, updated_at=order.updated_at,
            )
        )
        await self._session.execute(
            sa.insert(order_lines),
            [
                {"order_id": order.id, "line_no": n, "product_id": line.product_id, "sku": line.sku,
                 "name": line.name, "quantity": line.quantity, "unit_price_cents": line.unit_price_cents}
                for n, line in enumerate(order.lines, start=1)
            ],
        )
        await self._save_history(order)

    async def get_for_update(self, *, order_id: UUID) -> Order | None:
        row = (
            await self._session.execute(sa.select(orders).where(orders.c.id == order_id).with_for_update())
        ).mappings().first()
        if row is None:
            return None
        lines = (
            await self._session.execute(
                sa.select(order_lines).where(order_lines.c.order_id == order_id).order_by(order_lines.c.line_no)
            )
        ).mappings()
        history = (
            await self._session.execute(
                sa.select(order_history).where(order_history.c.order_id == order_id).order_by(order_history.c.id)
            )
        ).mappings()
        return Order(
            id=row["id"], customer_id=row["customer_id"], customer_email=row["customer_email"],
            lines=[Line(product_id=r["product_id"], sku=r["sku"], name=r["name"], quantity=r["quantity"],
                        unit_price_cents=r["unit_price_cents"]) for r in lines],
            currency=row["currency"], status=OrderStatus(row["status"]), created_at=row["created_at"],
            updated_at=row["updated_at"], cancel_reason=row["cancel_reason"],
            history=[HistoryEntry(status=h["status"], at=h["at"], note=h["note"]) for h in history],
        )

    async def save(self, order: Order) -> None:
        await self._session.execute(
            sa.update(orders).where(orders.c.id == order.id).values(
                status=order.status.value, cancel_reason=order.cancel_reason, updated_at=order.updated_at
            )
        )
        await self._save_history(order)

    async def _save_history(self, order: Order) -> None:
        if order.new_history:
            await self._session.execute(
                sa.insert(order_history),
                [{"order_id": order.id, "status": h.status, "note": h.note, "at": h.at} for h in order.new_history],
            )
            order.new_history.clear()
