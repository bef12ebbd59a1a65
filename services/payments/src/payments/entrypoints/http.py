from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Request
from pydantic import BaseModel

from payments.adapters.orm import payments

router = APIRouter()


class PaymentOut(BaseModel):
    order_id: UUID
    payment_id: UUID
    status: str
    amount_cents: int | None
    currency: str | None
    failure_reason: str | None


@router.get("/payments", response_model=list[PaymentOut])
async def list_payments(request: Request, order_id: UUID) -> list[PaymentOut]:
    async with request.app.state.runtime.session_factory() as session:
        rows = (await session.execute(sa.select(payments).where(payments.c.order_id == order_id))).mappings()
        return [PaymentOut.model_validate(dict(r)) for r in rows]
