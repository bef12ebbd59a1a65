"""Notifications' handlers (inside the consumer's inbox transaction; they do not commit)."""

from __future__ import annotations

from uuid import uuid4

from emporium_events.bus import BatchHandler, one_by_one
from emporium_events.contracts import OrderCancelled, OrderConfirmed
from emporium_events.envelope import Envelope
from notifications.domain import model
from notifications.service_layer.unit_of_work import NotificationsUnitOfWork


async def notify_confirmed(event: OrderConfirmed, _: Envelope, uow: NotificationsUnitOfWork) -> None:
    await uow.notifications.add(
        model.order_confirmed(
            id=uuid4(),
            customer_id=event.customer_id,
            order_id=event.order_id,
            email=event.customer_email,
            total_cents=event.total_cents,
            currency=event.currency,
        )
    )


async def notify_cancelled(event: OrderCancelled, _: Envelope, uow: NotificationsUnitOfWork) -> None:
    await uow.notifications.add(
        model.order_cancelled(
            id=uuid4(),
            customer_id=event.customer_id,
            order_id=event.order_id,
            email=event.customer_email,
            reason=event.reason,
        )
    )


EVENTS: dict[str, BatchHandler] = {
    OrderConfirmed.event_type: one_by_one(notify_confirmed),
    OrderCancelled.event_type: one_by_one(notify_cancelled),
}
