from __future__ import annotations

from dataclasses import asdict

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from emporium_events import tracing
from notifications.adapters.orm import notifications
from notifications.domain.model import Notification


class NotificationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, notification: Notification) -> bool:
        """False when this order already has a notification of this type."""
        status = "PENDING" if notification.email_to else "SKIPPED"
        result = await self._session.execute(
            insert(notifications)
            .values(**asdict(notification), email_status=status, trace_headers=tracing.current_carrier())
            .on_conflict_do_nothing(constraint="one_notification_per_order_and_type")
            .returning(notifications.c.id)
        )
        return result.first() is not None
