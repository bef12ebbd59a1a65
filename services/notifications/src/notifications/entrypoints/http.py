from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from emporium_kit.edge import CallerDep, runtime
from notifications.adapters import views

router = APIRouter()


class NotificationOut(BaseModel):
    id: UUID
    type: str
    order_id: UUID
    subject: str
    body: str
    email_status: str
    created_at: datetime
    sent_at: datetime | None


@router.get("/notifications", response_model=list[NotificationOut])
async def list_notifications(
    request: Request, who: CallerDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[NotificationOut]:
    rows = await views.notifications_of(runtime(request).session_factory, customer_id=who.id, limit=limit)
    return [NotificationOut.model_validate(r) for r in rows]
