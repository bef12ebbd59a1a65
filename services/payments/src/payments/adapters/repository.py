from __future__ import annotations

from dataclasses import asdict
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments.adapters.orm import payments
from payments.domain.model import Payment, PaymentStatus


class PaymentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get_or_start(self, *, order_id: UUID) -> Payment:
        """The order's payment, locked; created AWAITING if this is the first we hear of it."""
        await self._session.execute(
            _START,
            {
                "order_id": order_id,
                "payment_id": uuid4(),
                "status": PaymentStatus.AWAITING.value,
                "stock_reserved": False,
            },
        )
        row = (await self._session.execute(_LOCK, {"order_id": order_id})).mappings().one()
        values = {k: row[k] for k in Payment.__dataclass_fields__}
        values["status"] = PaymentStatus(values["status"])
        return Payment(**values)

    async def save(self, payment: Payment) -> None:
        values = asdict(payment)
        values["status"] = payment.status.value
        order_id = values.pop("order_id")
        await self._session.execute(_SAVE, {"id": order_id, **values})


# Built once: these run for every event, and building a statement costs more CPU than running it.
_START = insert(payments).on_conflict_do_nothing()
_LOCK = sa.select(payments).where(payments.c.order_id == sa.bindparam("order_id")).with_for_update()
_SAVE = sa.update(payments).where(payments.c.order_id == sa.bindparam("id")).values(updated_at=sa.func.now())
