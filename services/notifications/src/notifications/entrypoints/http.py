from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Header, HTTPException, Query, Request
from pydantic import BaseModel

from notifications.adapters.orm import notifications as n

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
    request: Request,
    x_user_id: Annotated[str | None, Header()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[NotificationOut]:
    try:
        customer_id = UUID(x_user_id or "")
    except ValueError as exc:
        raise HTTPException(401, "no caller identity (X-User-Id); call through the gateway") from exc
    async with request.app.state.runtime.session_factory() as session:
        rows = (
            await session.execute(
                sa.select(n)
                .where(n.c.customer_id == customer_id)
                .order_by(n.c.created_at.desc())
                .limit(limit)
            )
        ).mappings()
        return [NotificationOut.model_validate(dict(r)) for r in rows]
