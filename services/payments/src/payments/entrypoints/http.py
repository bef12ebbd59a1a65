from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel

from emporium_kit.edge import runtime
from payments.adapters import views

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
    rows = await views.payments_of(runtime(request).session_factory, order_id=order_id)
    return [PaymentOut.model_validate(r) for r in rows]
