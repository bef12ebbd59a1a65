"""Loads (with row locks, in product-id order) and saves of stock items and reservations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.adapters.orm import reservations, stock
from inventory.domain.model import Reservation, ReservationStatus, StockItem


class StockRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def ensure(self, *, product_id: UUID, sku: str | None = None) -> None:
        """Create an empty stock record if there is none (ProductCreated, or an admin's first PUT)."""
        await self._session.execute(
            insert(stock)
            .values(product_id=product_id, sku=sku, on_hand=0, reserved=0)
            .on_conflict_do_update(
                index_elements=["product_id"], set_={"sku": sa.func.coalesce(sku, stock.c.sku)}
            )
        )

    async def lock(self, *, product_ids: Iterable[UUID]) -> dict[UUID, StockItem]:
        ids = sorted(set(product_ids), key=str)
        rows = (await self._session.execute(_LOCK_STOCK, {"ids": ids})).all()
        return {
            r.product_id: StockItem(
                product_id=r.product_id, sku=r.sku, on_hand=r.on_hand, reserved=r.reserved
            )
            for r in rows
        }

    async def save(self, items: Iterable[StockItem]) -> None:
        for item in items:
            await self._session.execute(
                _SAVE_STOCK,
                {"id": item.product_id, "new_on_hand": item.on_hand, "new_reserved": item.reserved},
            )


class ReservationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get_for_update(self, *, order_id: UUID) -> Reservation | None:
        row = (await self._session.execute(_LOCK_RESERVATION, {"order_id": order_id})).mappings().first()
        if row is None:
            return None
        return Reservation(
            order_id=row["order_id"],
            status=ReservationStatus(row["status"]),
            lines={UUID(k): v for k, v in row["lines"].items()},
            reason=row["reason"],
            expires_at=row["expires_at"],
        )

    async def expired_ids(self, *, now: datetime, limit: int) -> list[UUID]:
        """Held reservations past their TTL, skipping any another replica is handling."""
        rows = await self._session.execute(
            sa.select(reservations.c.order_id)
            .where(
                reservations.c.status == ReservationStatus.RESERVED.value, reservations.c.expires_at <= now
            )
            .order_by(reservations.c.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(rows.scalars())

    async def save(self, reservation: Reservation) -> None:
        await self._session.execute(
            _SAVE_RESERVATION,
            {
                "order_id": reservation.order_id,
                "status": reservation.status.value,
                "lines": {str(k): v for k, v in reservation.lines.items()},
                "reason": reservation.reason,
                "expires_at": reservation.expires_at,
            },
        )


# The statements run for every event, built once (building one costs more CPU than running it).
_LOCK_STOCK = (
    sa.select(stock.c.product_id, stock.c.sku, stock.c.on_hand, stock.c.reserved)
    .where(stock.c.product_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(sa.cast(stock.c.product_id, sa.Text))
    .with_for_update()
)
_SAVE_STOCK = (
    sa.update(stock)
    .where(stock.c.product_id == sa.bindparam("id"))
    .values(
        on_hand=sa.bindparam("new_on_hand"), reserved=sa.bindparam("new_reserved"), updated_at=sa.func.now()
    )
)
_LOCK_RESERVATION = (
    sa.select(reservations).where(reservations.c.order_id == sa.bindparam("order_id")).with_for_update()
)
_upsert = insert(reservations).values(created_at=sa.func.now(), updated_at=sa.func.now())
_SAVE_RESERVATION = _upsert.on_conflict_do_update(
    index_elements=["order_id"],
    set_={
        "status": _upsert.excluded.status,
        "lines": _upsert.excluded.lines,
        "reason": _upsert.excluded.reason,
        "expires_at": _upsert.excluded.expires_at,
        "updated_at": sa.func.now(),
    },
)
