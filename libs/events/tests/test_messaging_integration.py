"""Outbox, relay, consumer, inbox and dead letters against the real Kafka broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import create_async_engine

from emporium_events import topics
from emporium_events.bus import MessageBus, one_by_one
from emporium_events.contracts import PaymentFailed
from emporium_events.envelope import Envelope
from emporium_events.kafka import EventConsumer, make_producer
from emporium_events.metrics import MessagingMetrics
from emporium_events.outbox import backlog
from emporium_events.relay import OutboxRelay
from emporium_events.tables import dead_letters, messaging_metadata, outbox
from emporium_events.unit_of_work import UnitOfWork
from emporium_kit.db import make_session_factory
from emporium_kit.runtime import ensure_topics

effects = sa.Table(
    "effects",
    sa.MetaData(),
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("order_id", sa.Uuid, nullable=False),
)


@dataclass
class Harness:
    sessions: sa.ext.asyncio.async_sessionmaker
    producer: object
    relay: OutboxRelay
    metrics: MessagingMetrics
    bootstrap: str
    tasks: list[asyncio.Task] = field(default_factory=list)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(
            self.sessions, producer_name="test", on_commit=lambda published: self.relay.notify()
        )

    async def effect_count(self, order_id: UUID) -> int:
        async with self.sessions() as s:
            return (
                await s.execute(sa.select(sa.func.count()).where(effects.c.order_id == order_id))
            ).scalar_one()

    @asynccontextmanager
    async def consumer(
        self, handler, *, group: str | None = None, max_attempts: int = 3, max_batch: int = 200
    ) -> AsyncIterator[EventConsumer]:
        consumer = EventConsumer(
            name=group or f"test-{uuid4().hex[:8]}",
            bootstrap=self.bootstrap,
            topics=[topics.PAYMENTS],
            bus=MessageBus(self.uow, events={PaymentFailed.event_type: one_by_one(handler)}),
            producer=self.producer,
            metrics=self.metrics,
            max_attempts=max_attempts,
            base_backoff=0.01,
            max_batch=max_batch,
        )
        await consumer.start()
        task = asyncio.create_task(consumer.run())
        try:
            yield consumer
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await consumer.stop()


async def record_effect(event: PaymentFailed, _: Envelope, uow: UnitOfWork) -> None:
    await uow.connection.execute(sa.insert(effects).values(order_id=event.order_id))


async def eventually(check, *, timeout: float = 20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.05)


@pytest.fixture
async def harness(databases, kafka_bootstrap) -> AsyncIterator[Harness]:
    url = databases.create("events")
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(messaging_metadata.create_all)
        await conn.run_sync(effects.metadata.create_all)
    sessions = make_session_factory(engine)
    await ensure_topics(kafka_bootstrap)
    producer = make_producer(kafka_bootstrap, client_id="test")
    await producer.start()
    metrics = MessagingMetrics.for_service("eventstest", CollectorRegistry())
    relay = OutboxRelay(sessions, producer, metrics=metrics, sweep_interval=0.5)
    h = Harness(sessions=sessions, producer=producer, relay=relay, metrics=metrics, bootstrap=kafka_bootstrap)
    relay_task = asyncio.create_task(relay.run())
    yield h
    relay_task.cancel()
    await asyncio.gather(relay_task, return_exceptions=True)
    await producer.stop()
    await engine.dispose()


async def _publish(h: Harness, order_id: UUID, *, commit: bool = True) -> Envelope:
    async with h.uow() as uow:
        envelope = uow.publish(
            PaymentFailed(order_id=order_id, reason="PAYMENT_DECLINED"), aggregate_id=order_id
        )
        if commit:
            await uow.commit()
    return envelope


async def test_an_event_committed_to_the_outbox_is_relayed_and_handled_once_in_the_same_trace(harness, spans):
    from opentelemetry import trace

    order_id = uuid4()
    async with harness.consumer(record_effect):
        with trace.get_tracer("test").start_as_current_span("place order") as root:
            await _publish(harness, order_id)
        assert await eventually(lambda: harness.effect_count(order_id))
    assert await harness.effect_count(order_id) == 1
    consumer_spans = [
        s
        for s in spans.get_finished_spans()
        if s.name == "payments.events process" and s.context.trace_id == root.get_span_context().trace_id
    ]
    assert consumer_spans, "the consumer's span continues the publisher's trace"
    assert consumer_spans[0].attributes["messaging.system"] == "kafka"
    async with harness.sessions() as s:
        unsent = (await s.execute(sa.select(sa.func.count()).where(outbox.c.sent_at.is_(None)))).scalar_one()
    assert unsent == 0


async def test_a_rolled_back_transaction_leaves_nothing_to_publish(harness):
    await _publish(harness, uuid4(), commit=False)
    assert await backlog(harness.sessions) == (0, 0.0)
    async with harness.sessions() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one() == 0


async def test_a_row_written_without_waking_the_relay_is_published_by_the_sweep(harness):
    order_id = uuid4()
    envelope = Envelope.wrap(
        PaymentFailed(order_id=order_id, reason="X"), producer="other", aggregate_id=str(order_id)
    )
    async with harness.sessions() as s, s.begin():
        await s.execute(
            sa.insert(outbox).values(
                event_id=envelope.event_id,
                topic=topics.PAYMENTS,
                key=str(order_id),
                event_type=envelope.event_type,
                envelope=envelope.model_dump(mode="json"),
            )
        )

    async def sent() -> bool:
        async with harness.sessions() as s:
            return (
                await s.execute(sa.select(outbox.c.sent_at).where(outbox.c.event_id == envelope.event_id))
            ).scalar()

    assert await eventually(sent, timeout=10)


async def test_a_redelivered_event_is_acknowledged_and_changes_nothing(harness):
    order_id = uuid4()
    envelope = Envelope.wrap(
        PaymentFailed(order_id=order_id, reason="X"), producer="p", aggregate_id=str(order_id)
    )
    for _ in range(3):  # with the header the relay sets
        await harness.producer.send_and_wait(
            topics.PAYMENTS,
            key=str(order_id).encode(),
            value=envelope.to_bytes(),
            headers=[("event_type", envelope.event_type.encode())],
        )
    duplicates = harness.metrics.consumed.labels(topics.PAYMENTS, envelope.event_type, "duplicate")
    before = duplicates._value.get()
    async with harness.consumer(record_effect):
        assert await eventually(lambda: _gt(lambda: duplicates._value.get(), before + 1.5))
    assert await harness.effect_count(order_id) == 1


async def _gt(value, threshold) -> bool:
    return value() >= threshold


async def test_a_handler_that_fails_once_is_retried_and_its_effect_lands_once(harness):
    order_id = uuid4()
    calls = 0

    async def flaky(event, envelope, uow):
        nonlocal calls
        await record_effect(event, envelope, uow)
        if event.order_id != order_id:
            return
        calls += 1
        if calls == 1:
            raise RuntimeError("first attempt fails after writing")

    async with harness.consumer(flaky):
        await _publish(harness, order_id)
        assert await eventually(lambda: harness.effect_count(order_id))
    assert await harness.effect_count(order_id) == 1
    assert calls == 2


async def _dead_letters(bootstrap: str, order_id: UUID) -> list:
    consumer = AIOKafkaConsumer(
        topics.dlq(topics.PAYMENTS),
        bootstrap_servers=bootstrap,
        group_id=f"dlq-{uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found = []
    try:
        for _ in range(40):
            batch = await consumer.getmany(timeout_ms=250)
            for records in batch.values():
                found += [r for r in records if r.key == str(order_id).encode()]
            if found:
                break
    finally:
        await consumer.stop()
    return found


async def test_a_poison_message_goes_to_the_dead_letter_topic_with_the_error_offset_and_attempts(harness):
    order_id = uuid4()
    await harness.producer.send_and_wait(topics.PAYMENTS, key=str(order_id).encode(), value=b"{not json")
    async with harness.consumer(record_effect):
        letters = await _dead_letters(harness.bootstrap, order_id)
    assert len(letters) == 1
    headers = dict(letters[0].headers)
    assert headers["dlq.error_type"] == b"UndecodableMessage"
    assert headers["dlq.source_topic"] == topics.PAYMENTS.encode()
    assert int(headers["dlq.source_offset"]) >= 0
    assert headers["dlq.attempts"] == b"1"
    assert letters[0].value == b"{not json"
    async with harness.sessions() as s:
        stored = (
            await s.execute(sa.select(dead_letters).where(dead_letters.c.key == str(order_id).encode()))
        ).all()
    assert [(r.error_type, r.value) for r in stored] == [("UndecodableMessage", b"{not json")]


async def test_a_handler_that_always_fails_is_dead_lettered_after_its_attempts_and_the_partition_moves_on(
    harness,
):
    poisoned, healthy = uuid4(), uuid4()

    async def refuse_one(event, envelope, uow):
        if event.order_id == poisoned:
            raise RuntimeError("always fails")
        await record_effect(event, envelope, uow)

    async with harness.consumer(refuse_one, max_attempts=3):
        await _publish(harness, poisoned)
        await _publish(harness, healthy)
        assert await eventually(lambda: harness.effect_count(healthy))
        letters = await _dead_letters(harness.bootstrap, poisoned)
    assert dict(letters[0].headers)["dlq.attempts"] == b"3"
    assert json.loads(letters[0].value)["payload"]["order_id"] == str(poisoned)
    assert await harness.effect_count(poisoned) == 0


async def _published_backlog(harness: Harness, order_ids: list[UUID]) -> None:
    """Put events in Kafka before any consumer runs, so the first poll returns them together."""
    async with harness.uow() as uow:
        for order_id in order_ids:
            uow.publish(PaymentFailed(order_id=order_id, reason="PAYMENT_DECLINED"), aggregate_id=order_id)
        await uow.commit()
    assert await eventually(lambda: _backlog_empty(harness))


async def _backlog_empty(harness: Harness) -> bool:
    return (await backlog(harness.sessions))[0] == 0


async def test_a_backlog_is_handled_in_shared_transactions_and_each_effect_lands_once(harness):
    ours = [uuid4() for _ in range(30)]
    transactions: dict[UUID, int] = {}

    async def record_with_txid(event, envelope, uow):
        if event.order_id in ours:
            transactions[event.order_id] = (
                await uow.connection.execute(sa.text("SELECT txid_current()"))
            ).scalar_one()
        await record_effect(event, envelope, uow)

    await _published_backlog(harness, ours)
    async with harness.consumer(record_with_txid):
        assert await eventually(lambda: _all_have_effects(harness, ours))
    assert [await harness.effect_count(o) for o in ours] == [1] * 30
    assert len(set(transactions.values())) < len(ours)  # some events shared a transaction


async def _all_have_effects(harness: Harness, order_ids: list[UUID]) -> bool:
    return all([await harness.effect_count(o) for o in order_ids])


async def test_one_failing_event_in_a_shared_transaction_keeps_its_neighbours_effects(harness):
    ours = [uuid4() for _ in range(10)]
    poisoned = ours[4]

    async def refuse_one(event, envelope, uow):
        await record_effect(event, envelope, uow)  # written, then rolled back with the batch
        if event.order_id == poisoned:
            raise RuntimeError("always fails")

    await _published_backlog(harness, ours)
    async with harness.consumer(refuse_one, max_attempts=2):
        assert await eventually(lambda: _all_have_effects(harness, [o for o in ours if o != poisoned]))
        letters = await _dead_letters(harness.bootstrap, poisoned)
    assert len(letters) == 1
    assert [await harness.effect_count(o) for o in ours] == [0 if o == poisoned else 1 for o in ours]


async def test_an_event_type_without_a_handler_is_skipped_by_its_header_without_parsing(harness):
    skipped, healthy = uuid4(), uuid4()
    await harness.producer.send_and_wait(
        topics.PAYMENTS,
        key=str(skipped).encode(),
        value=b"not parsed",
        headers=[("event_type", b"payments.Other")],
    )
    async with harness.consumer(record_effect):
        await _publish(harness, healthy)
        assert await eventually(lambda: harness.effect_count(healthy))
    letters = await _dead_letters(harness.bootstrap, skipped)
    assert letters == []  # neither parsed nor dead-lettered: nobody here handles that type


def _sample(metric, **labels) -> float | None:
    """The current value of one series of ``metric`` (None when it is not exposed)."""
    for family in metric.collect():
        for sample in family.samples:
            if sample.labels == labels and not sample.name.endswith("_created"):
                return sample.value
    return None


def holds(predicate):
    """``predicate`` as the async check ``eventually`` takes."""

    async def check() -> bool:
        return predicate()

    return check


async def test_a_dead_lettered_event_counts_in_dead_letters_total(harness):
    before = _sample(harness.metrics.dead_letters, topic=topics.PAYMENTS) or 0.0
    order_id = uuid4()
    await harness.producer.send_and_wait(topics.PAYMENTS, key=str(order_id).encode(), value=b"{not json")
    async with harness.consumer(record_effect):
        assert await _dead_letters(harness.bootstrap, order_id)

        async def stored() -> int:  # earlier tests' poison on the topic is dead-lettered too
            async with harness.sessions() as s:
                return (await s.execute(sa.select(sa.func.count()).select_from(dead_letters))).scalar_one()

        # The counter moves just after each dead letter's commit: wait for the two to agree
        # while the consumer still runs (it may be storing another poison message meanwhile).
        async def agree() -> bool:
            return _sample(harness.metrics.dead_letters, topic=topics.PAYMENTS) == before + await stored()

        assert await eventually(agree, timeout=10), (
            f"dead_letters_total {_sample(harness.metrics.dead_letters, topic=topics.PAYMENTS)} "
            f"vs {before} + {await stored()} stored"
        )
    assert await stored() >= 1


async def _store_dead_letters(harness: Harness, *, pending: int, replayed: int) -> None:
    async with harness.sessions() as s, s.begin():
        await s.execute(sa.delete(dead_letters))
        for n in range(pending + replayed):
            await s.execute(
                sa.insert(dead_letters).values(
                    consumer="c",
                    topic=topics.PAYMENTS,
                    partition=0,
                    offset=n,
                    value=b"x",
                    error_type="E",
                    error="e",
                    attempts=1,
                    replayed_at=sa.func.now() if n >= pending else None,
                )
            )


async def test_the_dead_letters_depth_counts_the_letters_not_yet_replayed(harness):
    await _store_dead_letters(harness, pending=2, replayed=1)
    depth = harness.metrics.dead_letters_depth
    assert await eventually(holds(lambda: _sample(depth) == 2), timeout=5)


async def test_the_relay_refreshes_its_gauges_even_when_every_moment_wakes_it(harness):
    """Under load every commit wakes the relay before its sweep times out; the backlog and
    dead-letter gauges must still be refreshed once per sweep interval."""
    await _store_dead_letters(harness, pending=3, replayed=0)
    depth = harness.metrics.dead_letters_depth
    deadline = asyncio.get_running_loop().time() + 5
    while _sample(depth) != 3 and asyncio.get_running_loop().time() < deadline:
        harness.relay.notify()
        await asyncio.sleep(0.02)
    assert _sample(depth) == 3


async def test_a_consumer_behind_its_partition_reports_its_lag_and_zero_once_caught_up(harness):
    key = uuid4()
    order_ids = [uuid4() for _ in range(20)]
    sent = [
        await harness.producer.send_and_wait(
            topics.PAYMENTS,
            key=str(key).encode(),
            value=Envelope.wrap(
                PaymentFailed(order_id=order_id, reason="X"), producer="p", aggregate_id=str(key)
            ).to_bytes(),
        )
        for order_id in order_ids
    ]
    release = asyncio.Event()

    async def slow(event, envelope, uow):
        if event.order_id == order_ids[0]:
            await release.wait()
        await record_effect(event, envelope, uow)

    lag = harness.metrics.consumer_lag
    async with harness.consumer(slow, max_batch=1) as consumer:  # one record per poll
        labels = {"group": consumer.name, "topic": topics.PAYMENTS, "partition": str(sent[0].partition)}
        # Held on the first of our 20 records: the 19 behind it (at least) are lag.
        assert await eventually(holds(lambda: (_sample(lag, **labels) or 0) >= 19))
        release.set()
        assert await eventually(holds(lambda: _sample(lag, **labels) == 0))
        assert await harness.effect_count(order_ids[-1]) == 1
    assert _sample(lag, **labels) is None, "a consumer that left no longer reports the partition"
