"""A service's running parts: database, Kafka producer, outbox relay and consumers.

Built in the FastAPI lifespan (never at import time) and closed on shutdown. Kafka may be
unreachable when a service starts: the service still serves HTTP, reports not ready, and
connects in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any, Generic, Protocol, TypeVar

import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from fastapi import APIRouter, FastAPI

from emporium_events import topics
from emporium_events.bus import BatchHandler, MessageBus
from emporium_events.kafka import EventConsumer, make_producer
from emporium_events.metrics import MessagingMetrics
from emporium_events.relay import OutboxRelay
from emporium_events.retention import MessagingRetention, RetentionMetrics
from emporium_events.unit_of_work import UnitOfWork
from emporium_kit import admin, observability, problems
from emporium_kit.db import make_engine, make_session_factory
from emporium_kit.periodic import Periodic
from emporium_kit.settings import ServiceSettings

log = logging.getLogger(__name__)

U = TypeVar("U", bound=UnitOfWork)

TOPIC_PARTITIONS = 3
STOP_STEP_SECONDS = 5.0


class Resource(Protocol):
    """Something a service opens at start-up and closes at shutdown (an HTTP client, say)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class ConsumerSpec:
    """One consumer group: its name (also the inbox key) and topics. It handles every event
    type the service's bus has a handler for."""

    name: str
    topics: Sequence[str]


@dataclass
class Runtime(Generic[U]):
    """``commands``, ``events`` and ``dependencies`` make the service's message bus (``bus``),
    the one way its use cases run: routes and periodic jobs send it commands, consumers hand it
    their batches."""

    service: str
    settings: ServiceSettings
    uow_class: type[U]
    commands: Mapping[type, Callable[..., Awaitable[Any]]] = field(default_factory=dict)
    events: Mapping[str, BatchHandler] = field(default_factory=dict)
    dependencies: dict[str, Any] = field(default_factory=dict)
    consumers: Sequence[ConsumerSpec] = ()
    resources: list[Resource] = field(default_factory=list)
    commit_hooks: list[Callable[[], None]] = field(default_factory=list)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _running: list[EventConsumer] = field(default_factory=list)
    _retention: Periodic | None = None
    kafka_connected: bool = False

    async def start(self) -> None:
        self.metrics = MessagingMetrics.for_service(self.service)
        self.engine = make_engine(self.settings.database_url, pool_size=self.settings.db_pool_size)
        self.session_factory = make_session_factory(self.engine)
        self.producer = make_producer(self.settings.kafka_bootstrap, client_id=self.service)
        self.relay = OutboxRelay(
            self.session_factory,
            self.producer,
            metrics=self.metrics,
            sweep_interval=self.settings.relay_sweep_seconds,
        )
        for resource in self.resources:
            await resource.start()
        if self.settings.retention_sweep_seconds > 0:  # every replica, Kafka or not (see retention)
            self._retention = self._retention_job()
            await self._retention.start()
        self._tasks.append(asyncio.create_task(self._connect(), name=f"{self.service}-kafka"))

    def _retention_job(self) -> Periodic:
        retention = MessagingRetention(
            self.session_factory,
            metrics=RetentionMetrics.for_service(self.service),
            outbox_window=timedelta(hours=self.settings.outbox_retention_hours),
            inbox_window=timedelta(hours=self.settings.inbox_retention_hours),
            batch_size=self.settings.retention_batch_size,
        )
        return Periodic(
            "messaging-retention",
            retention.sweep,
            interval=self.settings.retention_sweep_seconds,
            logs_itself=True,
        )

    def uow(self) -> U:
        return self.uow_class(self.session_factory, producer_name=self.service, on_commit=self._committed)

    @cached_property
    def bus(self) -> MessageBus[U]:
        """Built on first use, so that wiring may still add handlers and dependencies after
        the runtime is made (a handler's dependency may need the runtime itself)."""
        return MessageBus(
            self.uow, commands=self.commands, events=self.events, dependencies=self.dependencies
        )

    def _committed(self, published: int) -> None:
        if published:
            self.relay.notify()
        for hook in self.commit_hooks:
            hook()

    async def _connect(self) -> None:
        await _retry_forever(f"{self.service}: Kafka", self._connect_producer)
        self.kafka_connected = True
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.service}-relay"))
        for spec in self.consumers:
            consumer = EventConsumer(
                name=spec.name,
                bootstrap=self.settings.kafka_bootstrap,
                topics=spec.topics,
                bus=self.bus,
                max_batch=self.settings.consumer_max_records,
                tx_batch=self.settings.consumer_max_records,
                fetch_min_bytes=self.settings.consumer_fetch_min_bytes,
                fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
                commit_interval=self.settings.consumer_commit_interval_seconds,
                producer=self.producer,
                metrics=self.metrics,
            )
            self._running.append(consumer)
            self._tasks.append(asyncio.create_task(self._supervise(consumer), name=spec.name))

    async def _connect_producer(self) -> None:
        await ensure_topics(self.settings.kafka_bootstrap)
        await self.producer.start()

    async def _supervise(self, consumer: EventConsumer) -> None:
        """Run a consumer for the life of the service: whatever stops its loop, it is rebuilt
        (its committed offsets are safe, and the inbox absorbs what is replayed)."""
        while True:
            await _retry_forever(consumer.name, consumer.start)
            try:
                await consumer.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: consumer loop stopped; restarting it", consumer.name)
            consumer.ready.clear()
            try:
                await consumer.stop()
            except Exception:  # a consumer that cannot even close is rebuilt all the same
                log.exception("%s: consumer did not stop cleanly", consumer.name)
            await asyncio.sleep(1.0)

    async def ready(self) -> dict[str, bool]:
        checks = {"database": await self._database_ok(), "kafka": self.kafka_connected}
        for spec in self.consumers:
            checks[f"consumer:{spec.name}"] = any(
                c.name == spec.name and c.ready.is_set() for c in self._running
            )
        return checks

    async def _database_ok(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(sa.text("SELECT 1")), timeout=2)
            return True
        except (sa.exc.SQLAlchemyError, OSError, TimeoutError):
            return False

    async def stop(self) -> None:
        """Stop within bounded time even when Kafka or PostgreSQL is gone (closing a producer
        flushes to the broker, which can wait forever): each step gets a few seconds."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_STEP_SECONDS)
        steps = [consumer.stop() for consumer in self._running]
        if self._retention is not None:
            steps.append(self._retention.stop())
        if self.kafka_connected:
            steps.append(self.producer.stop())
        steps += [resource.stop() for resource in reversed(self.resources)]
        for step in steps:
            try:
                await asyncio.wait_for(step, timeout=STOP_STEP_SECONDS)
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning("%s: a shutdown step did not finish cleanly: %r", self.service, exc)
        await self.engine.dispose()


async def _retry_forever(what: str, attempt: Callable[[], Awaitable[None]]) -> None:
    delay = 0.2
    while True:
        try:
            await attempt()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the broker may be down or starting: wait for it
            log.warning("%s not reachable yet (%r); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def ensure_topics(bootstrap: str, names: Sequence[str] | None = None) -> None:
    """Create the event topics and their DLQs if missing (idempotent; any Kafka).

    Sized to the cluster: replication factor min(3, live brokers in its metadata) and, with
    three copies, ``min.insync.replicas`` 2 (with the producers' ``acks=all``, a write is on two
    brokers before it is acknowledged, and one broker may be lost). The same code serves one
    broker and three. Topics that exist are left exactly as they are, whoever made them (a
    Strimzi ``KafkaTopic``, an operator's own settings): nothing here alters or checks them.
    A topic the broker refuses to create (say, three copies asked while a broker is away) raises,
    and the caller retries.
    """
    wanted = list(names or [t for topic in topics.ALL for t in (topic, topics.dlq(topic))])
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if not missing:
            return
        brokers = len((await admin.describe_cluster())["brokers"])
        factor, configs = topic_replication(brokers)
        response = await admin.create_topics(
            [
                NewTopic(
                    name=n,
                    num_partitions=TOPIC_PARTITIONS,
                    replication_factor=factor,
                    topic_configs=configs,
                )
                for n in missing
            ]
        )
        # Per-topic errors come back in the response, not as an exception.
        for topic, code, *message in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise for_code(code)(f"creating topic {topic}: {message[0] if message else ''}")
    finally:
        await admin.close()


def topic_replication(brokers: int) -> tuple[int, dict[str, str]]:
    """Replication factor and topic configs for a new topic on a cluster of ``brokers``."""
    factor = max(1, min(3, brokers))
    return factor, ({"min.insync.replicas": "2"} if factor >= 3 else {})


def create_app(
    *,
    service: str,
    runtime: Runtime[Any],
    routers: Sequence[APIRouter],
    error_status: Mapping[type[Exception], int] | None = None,
) -> FastAPI:
    observability.configure(service, log_level=runtime.settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=f"Emporium {service}", lifespan=lifespan, telemetry=observability.FASTAPI_TELEMETRY_OFF
    )
    problems.install(app, error_status or {})
    observability.instrument(app, service)
    observability.add_health_routes(app, runtime.ready)
    for router in routers:
        app.include_router(router)
    app.include_router(admin.router)
    return app
