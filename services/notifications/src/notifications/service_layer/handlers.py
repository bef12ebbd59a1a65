"""Notifications' handlers, run by its message bus inside the batch's inbox transaction (the bus
commits; they do not).

Both take a whole batch and record its notifications with one statement. Idempotent twice over:
the inbox drops a redelivered event (key: consumer and event id), and an order's notification of
a type is recorded once (key: order id and type), so a re-published event with a new id adds
nothing either.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import uuid4

from emporium_events import tracing
from emporium_events.bus import BatchHandler, Delivery
from emporium_events.contracts import OrderCancelled, OrderConfirmed
from notifications.domain import model
from notifications.service_layer.unit_of_work import NotificationsUnitOfWork


async def notify_confirmed(
    deliveries: Sequence[Delivery[OrderConfirmed]], uow: NotificationsUnitOfWork
) -> None:
    await uow.notifications.add_many(
        [
            (
                model.order_confirmed(
                    id=uuid4(),
                    customer_id=d.event.customer_id,
                    order_id=d.event.order_id,
                    email=d.event.customer_email,
                    total_cents=d.event.total_cents,
                    currency=d.event.currency,
                ),
                tracing.current_carrier(d.trace_context),  # the mail's span joins the order's trace
            )
            for d in deliveries
        ]
    )


async def notify_cancelled(
    deliveries: Sequence[Delivery[OrderCancelled]], uow: NotificationsUnitOfWork
) -> None:
    await uow.notifications.add_many(
        [
            (
                model.order_cancelled(
                    id=uuid4(),
                    customer_id=d.event.customer_id,
                    order_id=d.event.order_id,
                    email=d.event.customer_email,
                    reason=d.event.reason,
                ),
                tracing.current_carrier(d.trace_context),
            )
            for d in deliveries
        ]
    )


EVENTS: dict[str, BatchHandler] = {
    OrderConfirmed.event_type: notify_confirmed,
    OrderCancelled.event_type: notify_cancelled,
}
