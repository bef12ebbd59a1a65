from uuid import uuid4

from emporium_events.contracts import OrderCancelled, OrderConfirmed
from emporium_events.envelope import Envelope
from emporium_events.testing import FakeUnitOfWork
from notifications.domain import model
from notifications.service_layer import handlers

ENV = Envelope(event_type="x", version=1, producer="t", aggregate_id="a", payload={})


class FakeNotifications:
    def __init__(self) -> None:
        self.rows: dict[tuple, model.Notification] = {}

    async def add(self, notification: model.Notification) -> bool:
        key = (notification.order_id, notification.type)
        if key in self.rows:
            return False
        self.rows[key] = notification
        return True


class FakeUoW(FakeUnitOfWork):
    def __init__(self) -> None:
        super().__init__()
        self.notifications = FakeNotifications()


async def test_a_confirmed_order_gives_the_customer_one_order_confirmed_notification():
    uow, order, customer = FakeUoW(), uuid4(), uuid4()
    event = OrderConfirmed(
        order_id=order,
        customer_id=customer,
        customer_email="c@x.io",
        lines=(),
        total_cents=123456,
        currency="USD",
    )
    await handlers.notify_confirmed(event, ENV, uow)
    await handlers.notify_confirmed(event, ENV, uow)
    [note] = uow.notifications.rows.values()
    assert (note.type, note.customer_id, note.email_to) == ("order_confirmed", customer, "c@x.io")
    assert "1234.56 USD" in note.body


async def test_a_cancelled_order_says_why_in_words():
    uow = FakeUoW()
    await handlers.notify_cancelled(
        OrderCancelled(
            order_id=uuid4(),
            customer_id=uuid4(),
            lines=(),
            reason="PAYMENT_DECLINED",
            total_cents=1,
            currency="USD",
        ),
        ENV,
        uow,
    )
    [note] = uow.notifications.rows.values()
    assert note.type == "order_cancelled" and "payment was declined" in note.body
