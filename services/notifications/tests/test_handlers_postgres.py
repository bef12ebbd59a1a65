"""The handlers through the bus against real PostgreSQL, and the round trips of a batch (events
in, mail out) counted on the wire: PostgreSQL statements, BEGIN and COMMIT, SMTP sessions."""

from uuid import uuid4

import sqlalchemy as sa

from emporium_devstack.smtp import SmtpSink
from emporium_events.bus import Delivery, MessageBus
from emporium_events.contracts import OrderCancelled, OrderConfirmed
from emporium_events.envelope import Envelope
from notifications.adapters.mailer import SmtpSender
from notifications.adapters.orm import notifications as n
from notifications.service_layer import handlers
from notifications.service_layer.unit_of_work import NotificationsUnitOfWork


def bus_for(sessions) -> MessageBus:
    return MessageBus(
        lambda: NotificationsUnitOfWork(sessions, producer_name="notifications"), events=handlers.EVENTS
    )


def delivery(event) -> Delivery:
    return Delivery(event, Envelope.wrap(event, producer="orders", aggregate_id=str(event.order_id)))


def confirmed() -> OrderConfirmed:
    return OrderConfirmed(
        order_id=uuid4(),
        customer_id=uuid4(),
        customer_email="c@example.com",
        lines=(),
        total_cents=1999,
        currency="USD",
    )


def cancelled(order: OrderConfirmed) -> OrderCancelled:
    return OrderCancelled(
        order_id=order.order_id,
        customer_id=order.customer_id,
        customer_email=order.customer_email,
        lines=(),
        reason="OUT_OF_STOCK",
        total_cents=order.total_cents,
        currency=order.currency,
    )


async def kinds(sessions) -> dict[str, int]:
    async with sessions() as s:
        return dict((await s.execute(sa.select(n.c.type, sa.func.count()).group_by(n.c.type))).all())


async def test_a_redelivered_batch_of_events_creates_no_second_notification(sessions):
    orders = [confirmed() for _ in range(20)]
    batch = [delivery(e) for e in orders] + [delivery(cancelled(orders[0]))]
    assert await bus_for(sessions).handle_events("notifications", batch) == ["handled"] * 21
    assert await bus_for(sessions).handle_events("notifications", batch) == ["duplicate"] * 21
    # The same events published again (new event ids): the inbox takes them, the table does not.
    again = [delivery(e.event) for e in batch]
    assert await bus_for(sessions).handle_events("notifications", again) == ["handled"] * 21
    assert await kinds(sessions) == {"order_confirmed": 20, "order_cancelled": 1}


async def test_a_batch_costs_the_same_round_trips_for_one_mail_as_for_twenty(sessions, round_trips, tmp_path):
    counted, seen = round_trips(), {}
    for size in (1, 20):
        counted.reset()
        await bus_for(sessions).handle_events("notifications", [delivery(confirmed()) for _ in range(size)])
        handled = counted.total, counted.statements
        async with SmtpSink(maildir=tmp_path / str(size)) as sink:
            counted.reset()
            assert (
                await SmtpSender(
                    host=sink.host, port=sink.port, sender="shop@example.com", sessions=lambda: sessions
                ).send_due()
                == size
            )
            seen[size] = (*handled, counted.total, sink.connections)
    print(f"\nround trips per batch (events handled: PostgreSQL; mail: PostgreSQL, SMTP sessions): {seen}")
    # BEGIN, the inbox claim, one INSERT of every notification, COMMIT; then the claim and the mark.
    for size in (1, 20):
        assert seen[size] == (4, ["INSERT", "INSERT"], 2, 1)
