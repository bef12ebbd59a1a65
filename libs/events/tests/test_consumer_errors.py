"""How the consumer classifies a handler's failure (no broker needed: one record, handled alone)."""

from uuid import uuid4

import psycopg
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from emporium_events import topics
from emporium_events.bus import MessageBus, one_by_one
from emporium_events.contracts import OrderConfirmed
from emporium_events.envelope import Envelope
from emporium_events.kafka import EventConsumer
from emporium_events.metrics import MessagingMetrics
from emporium_events.testing import FakeUnitOfWork


def record(envelope: Envelope) -> ConsumerRecord[bytes, bytes]:
    value = envelope.to_bytes()
    return ConsumerRecord(
        topic=topics.ORDERS,
        partition=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=envelope.aggregate_id.encode(),
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=[("event_type", envelope.event_type.encode())],
    )


async def test_a_deadlock_raised_by_psycopg_itself_is_retried_not_dead_lettered():
    calls = 0

    async def confirm(event, envelope, uow) -> None:
        nonlocal calls
        calls += 1
        if calls <= 3:  # more failures than max_attempts allows for an error that is not transient
            raise psycopg.errors.DeadlockDetected("deadlock detected")

    consumer = EventConsumer(
        name="c",
        bootstrap="unused:9092",
        topics=[topics.ORDERS],
        bus=MessageBus(FakeUnitOfWork, events={"orders.OrderConfirmed": one_by_one(confirm)}),
        producer=None,  # dead-lettering would need it: the test fails loudly if it is tried
        metrics=MessagingMetrics.for_service("errtest", CollectorRegistry()),
        max_attempts=2,
        base_backoff=0.001,
    )
    order = uuid4()
    confirmed = OrderConfirmed(order_id=order, customer_id=uuid4(), lines=(), total_cents=100, currency="USD")
    envelope = Envelope.wrap(confirmed, producer="orders", aggregate_id=str(order))

    assert await consumer._process_with_retries(record(envelope)) == "handled"
    assert calls == 4
