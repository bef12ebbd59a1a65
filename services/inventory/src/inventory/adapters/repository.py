"""Loads (with row locks, in product-id order) and saves of stock items and reservations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from inventory.adapters.orm import reservations, stock
from inventory.domain.model import Reservation, ReservationStatus, StockItem


class StockRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def ensure(self, *, product_id: UUID, sku: str | None = None) -> None:
        """Create an empty stock record if there is none (ProductCreated, or an admin's first PUT)."""
        await self._connection.execute(
            insert(stock)
            .values(product_id=product_id, sku=sku, on_hand=0, reserved=0)
            .on_conflict_do_update(
                index_elements=["product_id"], set_={"sku": sa.func.coalesce(sku, stock.c.sku)}
            )
        )

    async def lock(self, *, product_ids: Iterable[UUID]) -> dict[UUID, StockItem]:
        ids = sorted(set(product_ids), key=str)
        if not ids:
            return {}
        rows = (await self._connection.execute(_LOCK_STOCK, {"ids": ids})).all()
        return {
            r.product_id: StockItem(
                product_id=r.product_id, sku=r.sku, on_hand=r.on_hand, reserved=r.reserved
            )
            for r in rows
        }

    async def save(self, items: Iterable[StockItem]) -> None:
        """Write the items' levels back, all with one statement."""
        rows = {item.product_id: item for item in items}
        if not rows:
            return
        await self._connection.execute(
            _SAVE_STOCK,
            {
                "ids": list(rows),
                "on_hand": [i.on_hand for i in rows.values()],
                "reserved": [i.reserved for i in rows.values()],
            },
        )


class ReservationRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get_many_for_update(self, *, order_ids: Iterable[UUID]) -> dict[UUID, Reservation]:
        """The orders' reservations that exist, locked (in order-id order), with one statement."""
        ids = sorted(set(order_ids))
        if not ids:
            return {}
        rows = (await self._connection.execute(_LOCK_RESERVATIONS, {"ids": ids})).mappings()
        return {
            row["order_id"]: Reservation(
                order_id=row["order_id"],
                status=ReservationStatus(row["status"]),
                lines={UUID(k): v for k, v in row["lines"].items()},
                reason=row["reason"],
                expires_at=row["expires_at"],
            )
            for row in rows
        }

    async def expired_ids(self, *, now: datetime, limit: int) -> list[UUID]:
        """Held reservations past their TTL, skipping any another replica is handling."""
        rows = await self._connection.execute(
            sa.select(reservations.c.order_id)
            .where(
                reservations.c.status == ReservationStatus.RESERVED.value, reservations.c.expires_at <= now
            )
            .order_by(reservations.c.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(rows.scalars())

    async def save_many(self, reservations: Iterable[Reservation]) -> None:
        """Insert or update the reservations with one statement."""
        rows = [
            {
                "order_id": r.order_id,
                "status": r.status.value,
                "lines": {str(k): v for k, v in r.lines.items()},
                "reason": r.reason,
                "expires_at": r.expires_at,
            }
            for r in reservations
        ]
        if rows:
            await self._connection.execute(_SAVE_RESERVATIONS, rows)


# The statements run for every event, built once (building one costs more CPU than running it).
_LOCK_STOCK = (
    sa.select(stock.c.product_id, stock.c.sku, stock.c.on_hand, stock.c.reserved)
    .where(stock.c.product_id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.Uuid))))
    .order_by(sa.cast(stock.c.product_id, sa.Text))
    .with_for_update()
)
# Many rows' new levels in one UPDATE, from arrays.
_SAVE_STOCK = sa.text(
    "UPDATE stock SET on_hand = v.on_hand, reserved = v.reserved, updated_at = now()"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:on_hand AS integer[]), CAST(:reserved AS integer[]))"
    " AS v(product_id, on_hand, reserved) WHERE stock.product_id = v.product_id"
)
_LOCK_RESERVATIONS = (
    sa.select(reservations)
    .where(reservations.c.order_id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.Uuid))))
    .order_by(reservations.c.order_id)
    .with_for_update()
)
_upsert = insert(reservations).values(created_at=sa.func.now(), updated_at=sa.func.now())
# RETURNING makes SQLAlchemy send many rows as one multi-row INSERT ("insertmanyvalues").
_SAVE_RESERVATIONS = _upsert.on_conflict_do_update(
    index_elements=["order_id"],
    set_={
        "status": _upsert.excluded.status,
        "lines": _upsert.excluded.lines,
        "reason": _upsert.excluded.reason,
        "expires_at": _upsert.excluded.expires_at,
        "updated_at": sa.func.now(),
    },
).returning(reservations.c.order_id)
