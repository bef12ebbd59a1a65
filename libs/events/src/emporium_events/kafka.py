"""Kafka producer and the batching, idempotent consumer every service uses."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from opentelemetry import context, trace
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from emporium_events import correlation, tracing
from emporium_events.bus import Delivery, MessageBus
from emporium_events.contracts import Event
from emporium_events.envelope import Envelope, UndecodableMessage, decode
from emporium_events.failpoints import crash_point
from emporium_events.metrics import MessagingMetrics
from emporium_events.tables import dead_letters
from emporium_events.topics import dlq, topic_for

log = logging.getLogger(__name__)


class PermanentError(Exception):
    """Raised by a handler for an event that can never succeed: it goes to the DLQ at once."""


# Errors that say "the database or network is away": retried without limit (the partition waits),
# never dead-lettered, because the message itself is fine.
# The hot statements run on psycopg directly (the unit of work's db), so psycopg's own errors
# count too: a deadlock or a cut connection there is not wrapped by SQLAlchemy.
TRANSIENT = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
    ConnectionError,
    TimeoutError,
    OSError,
)


def make_producer(bootstrap: str, *, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,  # the relay already sends a whole outbox batch at once; waiting adds to every hop
        request_timeout_ms=15000,
    )


UNKNOWN_EVENT_TYPE = "unknown"


def _event_type(record: ConsumerRecord[bytes, bytes]) -> str:
    """The relay's ``event_type`` header, or ``unknown`` for a record without one."""
    for key, value in record.headers or ():
        if key == "event_type":
            return str(value.decode("utf-8", "replace"))
    return UNKNOWN_EVENT_TYPE


class EventConsumer:
    """Consumes batches, handles them in shared transactions, commits offsets behind them.

    De-duplication key: ``(name, envelope.event_id)`` in the inbox table, claimed in the same
    transaction as the handler's effect. Offsets are committed only after the transactions of
    the records they cover have committed, so a crash replays from the last commit and the
    inbox turns the replay into no-ops. Offsets are committed at most every
    ``commit_interval`` seconds (and when the consumer idles or stops): each commit is a write
    to Kafka, and committing after every small batch cost the broker more CPU than the events.

    Under load a poll returns many records; up to ``tx_batch`` of them are claimed with one
    statement and handled in one transaction, so one commit (one WAL flush) serves them all.
    If anything in that transaction fails it is rolled back as a whole and its records are
    handled again one by one, each in its own transaction with the rules below, so one bad
    event never takes its neighbours' effects with it.

    Failures: an undecodable record, an invalid payload or a ``PermanentError`` goes to
    ``<topic>.dlq`` at once; a transient infrastructure error is retried with backoff for as long
    as it lasts; any other error is retried ``max_attempts`` times and then dead-lettered.
    """

    def __init__(
        self,
        *,
        name: str,
        bootstrap: str,
        topics: Sequence[str],
        bus: MessageBus[Any],
        producer: AIOKafkaProducer,
        metrics: MessagingMetrics,
        max_attempts: int = 5,
        base_backoff: float = 0.05,
        max_batch: int = 200,
        tx_batch: int = 200,
        fetch_min_bytes: int = 1,
        fetch_max_wait_ms: int = 500,
        commit_interval: float = 1.0,
    ) -> None:
        self.name = name
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._bus = bus
        self._uow_factory = bus.uow_factory
        self._producer = producer
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._base_backoff = base_backoff
        self._max_batch = max_batch
        self._tx_batch = tx_batch
        self._commit_interval = commit_interval
        self._fetch = {"fetch_min_bytes": fetch_min_bytes, "fetch_max_wait_ms": fetch_max_wait_ms}
        self._pending: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}  # next offset to take, per partition polled
        self._lag_series: dict[TopicPartition, Any] = {}  # the gauge's child per partition, made once
        self._assigned = metrics.consumer_assigned_partitions.labels(name)
        for topic in self._topics:  # at 0 from the start: increase() then sees the first dead letter
            metrics.dead_letters.labels(topic)
            for event_type in bus.event_types:  # and the first event of each type it handles
                if topic_for(event_type) == topic:
                    metrics.consumed.labels(topic, event_type, "handled")
        self._last_commit = 0.0
        self._consumer: AIOKafkaConsumer | None = None
        self._tracer = trace.get_tracer("emporium.consumer")
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=self._bootstrap,
            group_id=self.name,
            client_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_interval_ms=300_000,
            metadata_max_age_ms=5_000,
            **self._fetch,
        )
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            try:
                await self._commit(self._consumer)
            except Exception as exc:  # the broker may be gone; the next owner replays
                log.warning("%s: last offset commit failed: %r", self.name, exc)
            await self._consumer.stop()
            self._consumer = None
            self._forget_lag(keep=set())
            self._assigned.set(0)

    async def run(self) -> None:
        assert self._consumer is not None, "start() first"
        consumer = self._consumer
        while True:
            # Records handled but not committed: a poll that stays empty this long means the
            # consumer idles, and it commits then rather than at the next interval.
            wait_ms = int(min(self._commit_interval, 0.25) * 1000) if self._pending else 500
            batch = await consumer.getmany(timeout_ms=wait_ms, max_records=self._max_batch)
            assigned = consumer.assignment()
            self._assigned.set(len(assigned))
            if assigned:
                self.ready.set()
            self._observe_lag(consumer, batch)
            if not batch:
                await self._commit(consumer)
                continue
            await self._handle_batch(consumer, batch)
            if time.monotonic() - self._last_commit >= self._commit_interval:
                await self._commit(consumer)

    async def _handle_batch(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """Handle a poll's records, ``tx_batch`` at a time in shared transactions (one by one
        when a shared one fails), and move the pending offsets past what was handled."""
        abandoned: set[TopicPartition] = set()

        def owned(record: ConsumerRecord[bytes, bytes]) -> bool:
            """False once its partition was revoked while we worked: the new owner takes it
            from the last commit, and no later record of it is handled here."""
            tp = TopicPartition(record.topic, record.partition)
            if tp not in abandoned and tp not in consumer.assignment():
                abandoned.add(tp)
            return tp not in abandoned

        done: set[tuple[str, int, int]] = set()
        records = [record for rs in batch.values() for record in rs]  # each partition's in order
        for start in range(0, len(records), self._tx_batch):
            chunk = [record for record in records[start : start + self._tx_batch] if owned(record)]
            rest = await self._process_together(chunk) if len(chunk) > 1 else chunk
            left = {(r.topic, r.partition, r.offset) for r in rest}
            for record in chunk:
                key = (record.topic, record.partition, record.offset)
                if key in left:
                    if not owned(record):
                        continue
                    await self._process(record)
                done.add(key)
        for tp, rs in batch.items():
            for record in rs:  # up to the first record not handled: offsets never skip one
                if (tp.topic, tp.partition, record.offset) not in done:
                    break
                self._pending[tp] = record.offset + 1

    def _observe_lag(
        self,
        consumer: AIOKafkaConsumer,
        batch: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        """Set the lag gauge of every partition polled so far, once per poll (empty polls too, so
        an idle partition shows its producer moving ahead). Both ends are local: the position is
        the offset after the last record taken, and the end of the partition comes with every
        fetch response (no broker round trip). A partition no longer assigned loses its series:
        its new owner reports it."""
        for tp, records in batch.items():
            if records:
                self._positions[tp] = records[-1].offset + 1
        self._forget_lag(keep=consumer.assignment())
        for tp, position in self._positions.items():
            end = consumer.last_stable_offset(tp)  # read_committed reads up to here
            if end is None or end < 0:
                end = consumer.highwater(tp)
            if end is None:
                continue
            series = self._lag_series.get(tp)
            if series is None:
                series = self._lag_series[tp] = self._metrics.consumer_lag.labels(
                    self.name, tp.topic, str(tp.partition)
                )
            series.set(max(end - position, 0))

    def _forget_lag(self, *, keep: set[TopicPartition]) -> None:
        for tp in [tp for tp in self._positions if tp not in keep]:
            del self._positions[tp]
            self._lag_series.pop(tp, None)
            self._metrics.consumer_lag.remove(self.name, tp.topic, str(tp.partition))

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit what this member still owns of the pending offsets. A commit refused because
        of a rebalance loses no event: the partition's next owner replays from the last commit
        and the inbox skips what was already handled."""
        offsets, self._pending = self._pending, {}
        self._last_commit = time.monotonic()
        owned = {tp: offset for tp, offset in offsets.items() if tp in consumer.assignment()}
        if not owned:
            return
        crash_point("consumer.before_offset_commit")
        try:
            await consumer.commit(owned)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning(
                "%s: offset commit refused by a rebalance (%r); the new owner replays", self.name, exc
            )

    async def _process_together(
        self, records: list[ConsumerRecord[bytes, bytes]]
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Handle ``records`` (each partition's in order) in one transaction. Returns those
        left to handle one by one: none on success, every decodable one if the transaction
        failed (rolled back whole). Undecodable records are dead-lettered here and now."""
        started = time.perf_counter()
        parsed = []
        for record in records:
            if self._not_for_us(record):
                self._metrics.consumed.labels(record.topic, _event_type(record), "ignored").inc()
                continue
            try:
                envelope = decode(record.value)
                event = envelope.event()
            except (UndecodableMessage, ValidationError) as exc:
                await self._dead_letter(record, exc, attempts=1)
                self._metrics.consumed.labels(record.topic, _event_type(record), "dead_lettered").inc()
                continue
            parsed.append((record, envelope, event))
        if len(parsed) < 2:
            return [record for record, _, _ in parsed]
        outcomes: list[str] = ["ignored"] * len(parsed)
        deliveries, positions, spans = [], [], []
        for position, (record, envelope, event) in enumerate(parsed):
            if event is not None and self._bus.handles(envelope.event_type):
                parent = tracing.context_from_carrier(tracing.carrier_from_headers(record.headers))
                span = self._start_span(record, envelope, parent, current=False)
                spans.append(span)
                deliveries.append(Delivery(event, envelope, trace.set_span_in_context(span, parent)))
                positions.append(position)
        try:
            with self._batch_span(parsed):
                handled = await self._bus.handle_events(self.name, deliveries)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # rolled back whole; the records are handled one by one
            log.info("%s: batch of %d rolled back (%r); handling one by one", self.name, len(parsed), exc)
            return [record for record, _, _ in parsed]
        finally:
            for span in spans:
                span.end()
        for position, outcome in zip(positions, handled, strict=True):
            outcomes[position] = outcome
        each = (time.perf_counter() - started) / len(parsed)
        counts = Counter(
            (record.topic, envelope.event_type, outcome)
            for (record, envelope, _), outcome in zip(parsed, outcomes, strict=True)
        )
        for (topic, event_type, outcome), n in counts.items():  # per batch, not per record
            self._metrics.consumed.labels(topic, event_type, outcome).inc(n)
        for topic, n in Counter(record.topic for record, _, _ in parsed).items():
            histogram = self._metrics.handle_seconds.labels(topic)
            for _ in range(n):  # a histogram has no weighted observe: each record's share
                histogram.observe(each)
        return []

    def _batch_span(self, parsed: list[tuple[ConsumerRecord[bytes, bytes], Envelope, Event | None]]) -> Any:
        """The batch's one transaction (inbox claim, handlers, commit) as a span of its own,
        linked to each record's producer span; each record's handler still runs in a span that is
        a child of its producer, so every order's trace stays whole (README, "Observe it")."""
        links = [
            link
            for record, _, _ in parsed
            if (link := tracing.link_to(tracing.carrier_from_headers(record.headers))) is not None
        ]
        return self._tracer.start_as_current_span(
            "process batch",
            context=context.Context(),  # a root: the batch belongs to no single order
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.consumer.group.name": self.name,
                "messaging.batch.message_count": len(parsed),
            },
        )

    @contextlib.contextmanager
    def _span(self, record: ConsumerRecord[bytes, bytes], envelope: Envelope) -> Iterator[trace.Span]:
        """The record's processing span (a child of its producer's), with its order in the logs."""
        parent = tracing.context_from_carrier(tracing.carrier_from_headers(record.headers))
        token = correlation.order_id.set(envelope.correlation_id)
        try:
            with self._start_span(record, envelope, parent) as span:
                yield span
        finally:
            correlation.order_id.reset(token)

    def _start_span(
        self,
        record: ConsumerRecord[bytes, bytes],
        envelope: Envelope,
        parent: context.Context,
        *,
        current: bool = True,
    ) -> Any:
        start = self._tracer.start_as_current_span if current else self._tracer.start_span
        return start(
            f"{record.topic} process",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": record.topic,
                "messaging.operation.type": "process",
                "messaging.consumer.group.name": self.name,
                "messaging.message.id": str(envelope.event_id),
                "messaging.kafka.offset": record.offset,
                "messaging.destination.partition.id": str(record.partition),
            },
        )

    async def _process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        started = time.perf_counter()
        outcome = await self._process_with_retries(record)
        self._metrics.consumed.labels(record.topic, _event_type(record), outcome).inc()
        self._metrics.handle_seconds.labels(record.topic).observe(time.perf_counter() - started)

    def _not_for_us(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """True when the relay's ``event_type`` header names an event this consumer has no
        handler for: it is skipped without parsing (a topic carries all of its aggregate's events)."""
        event_type = _event_type(record)
        return event_type != UNKNOWN_EVENT_TYPE and not self._bus.handles(event_type)

    async def _process_with_retries(self, record: ConsumerRecord[bytes, bytes]) -> str:
        if self._not_for_us(record):
            return "ignored"
        try:
            envelope = decode(record.value)
            event = envelope.event()
        except (UndecodableMessage, ValidationError) as exc:
            await self._dead_letter(record, exc, attempts=1)
            return "dead_lettered"
        if event is None or not self._bus.handles(envelope.event_type):
            return "ignored"

        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._handle_once(record, envelope, event)
            except asyncio.CancelledError:
                raise
            except PermanentError as exc:
                await self._dead_letter(record, exc, attempts=attempt)
                return "dead_lettered"
            except TRANSIENT as exc:
                delay = min(self._base_backoff * 2 ** min(attempt, 8), 5.0)
                log.warning(
                    "%s: transient error on %s (attempt %d), retrying in %.2fs: %s",
                    self.name,
                    envelope.event_type,
                    attempt,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
            except Exception as exc:
                if attempt >= self._max_attempts:
                    log.exception(
                        "%s: giving up on %s after %d attempts", self.name, envelope.event_type, attempt
                    )
                    await self._dead_letter(record, exc, attempts=attempt)
                    return "dead_lettered"
                delay = self._base_backoff * 2**attempt
                log.warning(
                    "%s: %s failed (attempt %d), retrying in %.2fs: %r",
                    self.name,
                    envelope.event_type,
                    attempt,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)

    async def _handle_once(
        self, record: ConsumerRecord[bytes, bytes], envelope: Envelope, event: Event
    ) -> str:
        with self._span(record, envelope):
            [outcome] = await self._bus.handle_events(
                self.name, [Delivery(event, envelope, context.get_current())]
            )
        return outcome

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], exc: BaseException, *, attempts: int
    ) -> None:
        """To ``<topic>.dlq`` (error, source offset and attempts in headers) and to the service's
        ``dead_letters`` table, where the admin API lists and replays it."""
        log.error(
            "%s: dead-lettering %s[%d]@%d: %r", self.name, record.topic, record.partition, record.offset, exc
        )
        error = repr(exc)[:2000]
        headers = [
            *(record.headers or ()),
            ("dlq.error", error.encode()),
            ("dlq.error_type", type(exc).__name__.encode()),
            ("dlq.source_topic", record.topic.encode()),
            ("dlq.source_partition", str(record.partition).encode()),
            ("dlq.source_offset", str(record.offset).encode()),
            ("dlq.attempts", str(attempts).encode()),
            ("dlq.consumer", self.name.encode()),
        ]
        await self._producer.send_and_wait(
            dlq(record.topic), key=record.key, value=record.value, headers=headers
        )
        async with self._uow_factory() as uow:
            await uow.connection.execute(
                sa.insert(dead_letters).values(
                    consumer=self.name,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                    value=record.value,
                    headers=[[k, base64.b64encode(v).decode()] for k, v in record.headers or ()],
                    error_type=type(exc).__name__,
                    error=error,
                    attempts=attempts,
                )
            )
            await uow.commit()
        self._metrics.dead_letters.labels(record.topic).inc()


async def replay(producer: AIOKafkaProducer, row: sa.Row[Any]) -> None:
    """Publish a dead letter again on its source topic, as it was first received. Consumers that
    handled it already skip it (inbox); the one that failed tries again."""
    headers = [(k, base64.b64decode(v)) for k, v in row.headers] + [
        ("dlq.replayed_from", str(row.id).encode())
    ]
    await producer.send_and_wait(row.topic, key=row.key, value=row.value, headers=headers)
