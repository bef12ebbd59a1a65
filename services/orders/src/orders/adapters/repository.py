"""The Order aggregate, loaded whole (order, lines, history) and saved whole."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from emporium_events import tracing
from orders.adapters.catalog import PricedProduct
from orders.adapters.orm import catalog_prices, idempotency_keys, order_history, order_lines, orders
from orders.domain.model import HistoryEntry, Line, Order, OrderStatus


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self.saved: list[Order] = []  # what this transaction changed, for the unit of work

    async def add(self, order: Order) -> None:
        await self._session.execute(
            sa.insert(orders).values(
                id=order.id,
                customer_id=order.customer_id,
                customer_email=order.customer_email,
                status=order.status.value,
                total_cents=order.total_cents,
                currency=order.currency,
                cancel_reason=order.cancel_reason,
                created_at=order.created_at,
                updated_at=order.updated_at,
                deadline_at=order.deadline_at,
                idempotency_key=order.idempotency_key,
                trace_id=tracing.current_trace_id(),
            )
        )
        await self._session.execute(
            sa.insert(order_lines),
            [
                {
                    "order_id": order.id,
                    "line_no": n,
                    "product_id": line.product_id,
                    "sku": line.sku,
                    "name": line.name,
                    "quantity": line.quantity,
                    "unit_price_cents": line.unit_price_cents,
                }
                for n, line in enumerate(order.lines, start=1)
            ],
        )
        await self._save_history(order)

    async def get_for_update(self, *, order_id: UUID, with_history: bool = False) -> Order | None:
        """The order and its lines, row-locked, in one statement. The history (append-only,
        never needed to decide a transition) is read only ``with_history``; otherwise
        ``order.history`` holds just what this unit of work adds."""
        rows = (await self._session.execute(self._locked, {"order_id": order_id})).mappings().all()
        if not rows:
            return None
        row = rows[0]
        history = []
        if with_history:
            history = [
                HistoryEntry(status=h["status"], at=h["at"], note=h["note"])
                for h in (await self._session.execute(self._history, {"order_id": order_id})).mappings()
            ]
        return Order(
            id=row["id"],
            customer_id=row["customer_id"],
            customer_email=row["customer_email"],
            lines=[
                Line(
                    product_id=r["product_id"],
                    sku=r["sku"],
                    name=r["name"],
                    quantity=r["quantity"],
                    unit_price_cents=r["unit_price_cents"],
                )
                for r in rows
            ],
            currency=row["currency"],
            status=OrderStatus(row["status"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            cancel_reason=row["cancel_reason"],
            deadline_at=row["deadline_at"],
            idempotency_key=row["idempotency_key"],
            history=history,
        )

    # Built once: constructing a statement and its cache key costs more than running it.
    _locked = (
        sa.select(
            orders,
            order_lines.c.line_no,
            order_lines.c.product_id,
            order_lines.c.sku,
            order_lines.c.name,
            order_lines.c.quantity,
            order_lines.c.unit_price_cents,
        )
        .join(order_lines, order_lines.c.order_id == orders.c.id)
        .where(orders.c.id == sa.bindparam("order_id"))
        .order_by(order_lines.c.line_no)
        .with_for_update(of=orders)
    )
    _history = (
        sa.select(order_history)
        .where(order_history.c.order_id == sa.bindparam("order_id"))
        .order_by(order_history.c.id)
    )

    async def overdue_ids(self, *, now: datetime, limit: int) -> list[UUID]:
        """Orders whose saga outlived its deadline, skipping any another replica is handling."""
        rows = await self._session.execute(
            sa.select(orders.c.id)
            .where(
                orders.c.status.not_in([OrderStatus.CONFIRMED.value, OrderStatus.CANCELLED.value]),
                orders.c.deadline_at <= now,
            )
            .order_by(orders.c.deadline_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(rows.scalars())

    async def save(self, order: Order) -> None:
        self.saved.append(order)
        await self._session.execute(
            self._save,
            {
                "order_key": order.id,
                "status": order.status.value,
                "cancel_reason": order.cancel_reason,
                "updated_at": order.updated_at,
            },
        )
        await self._save_history(order)

    async def _save_history(self, order: Order) -> None:
        if order.new_history:
            await self._session.execute(
                self._append_history,
                [
                    {"order_id": order.id, "status": h.status, "note": h.note, "at": h.at}
                    for h in order.new_history
                ],
            )
            order.new_history.clear()

    _save = sa.update(orders).where(orders.c.id == sa.bindparam("order_key"))
    _append_history = sa.insert(order_history)


class IdempotencyKeys:
    """Stored answers to requests made with an ``Idempotency-Key``, per customer.

    The key row is written in the same transaction as the order it answers for, so a retry
    either finds the whole first answer or nothing at all.
    """

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def find(self, *, customer_id: UUID, key: str) -> sa.Row[*tuple[Any, ...]] | None:
        return (
            await self._session.execute(
                sa.select(
                    idempotency_keys.c.request_hash,
                    idempotency_keys.c.status_code,
                    idempotency_keys.c.response,
                ).where(idempotency_keys.c.customer_id == customer_id, idempotency_keys.c.key == key)
            )
        ).first()

    async def claim(self, *, customer_id: UUID, key: str, request_hash: str) -> bool:
        """Reserve the key for this transaction; False if another request holds or held it.

        A concurrent holder makes this wait until it commits (then False) or rolls back (then True).
        """
        result = await self._session.execute(
            insert(idempotency_keys)
            .values(customer_id=customer_id, key=key, request_hash=request_hash, status_code=0, response={})
            .on_conflict_do_nothing()
            .returning(idempotency_keys.c.key)
        )
        return result.first() is not None

    async def record(
        self, *, customer_id: UUID, key: str, status_code: int, response: dict[str, Any]
    ) -> None:
        await self._session.execute(
            sa.update(idempotency_keys)
            .where(idempotency_keys.c.customer_id == customer_id, idempotency_keys.c.key == key)
            .values(status_code=status_code, response=response)
        )

    async def purge(self, *, older_than: datetime) -> int:
        result = await self._session.execute(
            sa.delete(idempotency_keys).where(idempotency_keys.c.created_at < older_than)
        )
        return cast(sa.CursorResult[Any], result).rowcount or 0


class CatalogPrices:
    """Orders' copy of the catalog's prices, kept current from the catalog's events.

    One product's events share a partition, so they arrive in order and the last one wins.
    """

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, product_ids: list[UUID]) -> dict[UUID, PricedProduct]:
        rows = await self._session.execute(self._select, {"ids": product_ids})
        return {
            r.product_id: PricedProduct(
                product_id=r.product_id,
                sku=r.sku,
                name=r.name,
                price_cents=r.price_cents,
                currency=r.currency,
            )
            for r in rows
        }

    async def put(self, product: PricedProduct) -> None:
        await self._session.execute(
            self._upsert,
            {
                "product_id": product.product_id,
                "sku": product.sku,
                "name": product.name,
                "price_cents": product.price_cents,
                "currency": product.currency,
            },
        )

    _select = sa.select(catalog_prices).where(
        catalog_prices.c.product_id.in_(sa.bindparam("ids", expanding=True))
    )
    _insert = insert(catalog_prices).values(updated_at=sa.func.now())
    _upsert = _insert.on_conflict_do_update(
        index_elements=["product_id"],
        set_={
            "sku": _insert.excluded.sku,
            "name": _insert.excluded.name,
            "price_cents": _insert.excluded.price_cents,
            "currency": _insert.excluded.currency,
            "updated_at": sa.func.now(),
        },
    )
