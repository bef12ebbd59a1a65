"""The handlers through the bus, with fakes of the notifications port."""

from collections.abc import Sequence
from uuid import uuid4

from emporium_events.bus import Delivery, MessageBus
from emporium_events.contracts import OrderCancelled, OrderConfirmed
from emporium_events.envelope import Envelope
from emporium_events.testing import FakeUnitOfWork
from notifications.domain import model
from notifications.service_layer import handlers
from notifications.service_layer.ports import Notifications, TraceCarrier


class FakeNotifications(Notifications):
    def __init__(self) -> None:
        self.rows: dict[tuple, model.Notification] = {}
        self.calls = 0

    async def add_many(self, notifications: Sequence[tuple[model.Notification, TraceCarrier]]) -> int:
        self.calls += 1
        added = 0
        for note, _ in notifications:
            key = (note.order_id, note.type)
            if key not in self.rows:
                self.rows[key] = note
                added += 1
        return added


class FakeUoW(FakeUnitOfWork):
    def __init__(self) -> None:
        super().__init__()
        self.notifications = FakeNotifications()


def bus_with(uow: FakeUoW) -> MessageBus:
    return MessageBus(lambda: uow, events=handlers.EVENTS)


def delivery(event) -> Delivery:
    return Delivery(event, Envelope.wrap(event, producer="orders", aggregate_id=str(event.order_id)))


def confirmed(**overrides) -> OrderConfirmed:
    fields = dict(
        order_id=uuid4(),
        customer_id=uuid4(),
        customer_email="c@x.io",
        lines=(),
        total_cents=123456,
        currency="USD",
    )
    return OrderConfirmed(**(fields | overrides))


async def test_a_confirmed_order_gives_the_customer_one_order_confirmed_notification():
    uow, customer = FakeUoW(), uuid4()
    event = confirmed(customer_id=customer)
    await bus_with(uow).handle_events("notifications", [delivery(event)])
    await bus_with(uow).handle_events("notifications", [delivery(event)])  # re-published: a new event id
    [note] = uow.notifications.rows.values()
    assert (note.type, note.customer_id, note.email_to) == ("order_confirmed", customer, "c@x.io")
    assert "1234.56 USD" in note.body


async def test_a_batch_of_twenty_confirmations_is_recorded_with_one_call_and_redelivered_changes_nothing():
    uow = FakeUoW()
    batch = [delivery(confirmed()) for _ in range(20)]
    assert await bus_with(uow).handle_events("notifications", batch) == ["handled"] * 20
    assert await bus_with(uow).handle_events("notifications", batch) == ["duplicate"] * 20
    assert (len(uow.notifications.rows), uow.notifications.calls, uow.committed) == (20, 1, 2)


async def test_a_cancelled_order_says_why_in_words():
    uow = FakeUoW()
    event = OrderCancelled(
        order_id=uuid4(),
        customer_id=uuid4(),
        lines=(),
        reason="PAYMENT_DECLINED",
        total_cents=1,
        currency="USD",
    )
    await bus_with(uow).handle_events("notifications", [delivery(event)])
    [note] = uow.notifications.rows.values()
    assert note.type == "order_cancelled" and "payment was declined" in note.body
    assert note.email_to is None  # no address in the event: recorded, and no mail goes out
