from __future__ import annotations

from typing import Self

from emporium_events.unit_of_work import UnitOfWork
from notifications.adapters.repository import NotificationRepository
from notifications.service_layer.ports import Notifications


class NotificationsUnitOfWork(UnitOfWork):
    notifications: Notifications

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.notifications = NotificationRepository(self.db)
        return self
