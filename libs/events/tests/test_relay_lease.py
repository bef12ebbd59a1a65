"""Several relays on one outbox (a service's replicas), against the real Kafka and PostgreSQL:
one aggregate's events reach its partition in commit order, none is lost, and a standby takes
over when the lease holder dies or is cut from the database."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from emporium_events import topics
from emporium_events.contracts import PaymentFailed
from emporium_events.envelope import Envelope
from emporium_events.kafka import make_producer
from emporium_events.metrics import MessagingMetrics
from emporium_events.relay import LEASE_KEY, OutboxRelay
from emporium_events.tables import messaging_metadata
from emporium_events.unit_of_work import UnitOfWork
from emporium_kit.db import make_session_factory
from emporium_kit.runtime import TOPIC_PARTITIONS, ensure_topics

# An aggregate of the test: its row lock serializes the transactions that write its events, as
# every service's get_for_update does; ``n`` numbers its events in commit order.
counters = sa.Table(
    "counters",
    sa.MetaData(),
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
)

# Replicas run on different hosts: here each reaches PostgreSQL through a proxy that delays its
# answers by a replica's own few milliseconds, so that a relay which claimed a batch first may
# learn of it (and send it) after one that claimed the next batch.
ANSWER_DELAYS = (0.0, 0.012, 0.025)
TAKEOVER_BOUND = 5.0  # seconds from the holder's death to another relay holding the lease

_HOLDER = sa.text(
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND ((classid::bigint << 32) | objid::bigint) = :key"
)


class DelayProxy:
    """A TCP proxy to PostgreSQL that delays what the server sends by ``delay`` seconds."""

    def __init__(self, target: sa.URL, delay: float) -> None:
        self._target, self._delay = target, delay
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task] = set()

    async def start(self) -> sa.URL:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return self._target.set(host="127.0.0.1", port=port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(self._target.host, self._target.port)
        for pipe in (self._pipe(client_r, server_w, 0.0), self._pipe(server_r, client_w, self._delay)):
            task = asyncio.create_task(pipe)
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay: float) -> None:
        try:
            while data := await source.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.close()


@dataclass
class Replica:
    """One process of the service: its own producer, metrics and relay."""

    name: str
    relay: OutboxRelay
    producer: object
    registry: CollectorRegistry
    task: asyncio.Task | None = None

    @property
    def leading(self) -> bool:
        return self.registry.get_sample_value("emporium_relaytest_outbox_relay_leader") == 1


@dataclass
class Outbox:
    sessions: async_sessionmaker
    engine: AsyncEngine
    bootstrap: str
    replicas: list[Replica] = field(default_factory=list)
    proxies: list[DelayProxy] = field(default_factory=list)
    engines: list[AsyncEngine] = field(default_factory=list)

    async def add_replica(self, *, sweep_interval: float = 0.5, batch_size: int = 10) -> Replica:
        proxy = DelayProxy(self.engine.url, ANSWER_DELAYS[len(self.replicas) % len(ANSWER_DELAYS)])
        self.proxies.append(proxy)
        engine = create_async_engine(await proxy.start())
        self.engines.append(engine)
        producer = make_producer(self.bootstrap, client_id=f"relay-{len(self.replicas)}")
        await producer.start()
        registry = CollectorRegistry()
        relay = OutboxRelay(
            make_session_factory(engine),
            producer,
            metrics=MessagingMetrics.for_service("relaytest", registry),
            batch_size=batch_size,  # small, so that a run is many batches a second relay could race
            sweep_interval=sweep_interval,
        )
        replica = Replica(name=f"r{len(self.replicas)}", relay=relay, producer=producer, registry=registry)
        self.replicas.append(replica)
        return replica

    def start(self, replica: Replica) -> None:
        replica.task = asyncio.create_task(replica.relay.run(), name=replica.name)

    async def write(self, replica: Replica, aggregate: UUID) -> None:
        """One transaction of one aggregate on ``replica``: lock it, number the event, commit
        (which wakes that replica's relay only, as in a service)."""
        uow = UnitOfWork(self.sessions, producer_name="test", on_commit=lambda _: replica.relay.notify())
        async with uow:
            n = (
                await uow.connection.execute(
                    sa.select(counters.c.n).where(counters.c.id == aggregate).with_for_update()
                )
            ).scalar_one() + 1
            await uow.connection.execute(sa.update(counters).where(counters.c.id == aggregate).values(n=n))
            uow.publish(PaymentFailed(order_id=aggregate, reason=str(n)), aggregate_id=aggregate)
            await uow.commit()

    async def holder_pid(self) -> int | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(_HOLDER, {"key": LEASE_KEY})).scalar()

    async def cut_holder(self) -> int:
        """End the lease holder's session from outside, as a dead process or a network cut does."""
        pid = await self.holder_pid()
        assert pid is not None, "some relay holds the lease"
        async with self.engine.connect() as conn:
            assert (await conn.execute(sa.select(sa.func.pg_terminate_backend(pid)))).scalar()
        return pid

    async def leader(self, *, other_than: Replica | None = None, timeout: float = TAKEOVER_BOUND) -> Replica:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            leaders = [r for r in self.replicas if r.leading and r is not other_than and not _dead(r)]
            if len(leaders) == 1 and await self.holder_pid() is not None:
                return leaders[0]
            assert asyncio.get_running_loop().time() < deadline, f"no single leader: {leaders}"
            await asyncio.sleep(0.02)


def _dead(replica: Replica) -> bool:
    return replica.task is None or replica.task.done()


@pytest.fixture
async def box(databases, kafka_bootstrap) -> AsyncIterator[Outbox]:
    engine = create_async_engine(databases.create("relay"))
    async with engine.begin() as conn:
        await conn.run_sync(messaging_metadata.create_all)
        await conn.run_sync(counters.metadata.create_all)
    await ensure_topics(kafka_bootstrap)
    box = Outbox(sessions=make_session_factory(engine), engine=engine, bootstrap=kafka_bootstrap)
    yield box
    for replica in box.replicas:
        if replica.task is not None:
            replica.task.cancel()
    await asyncio.gather(*(r.task for r in box.replicas if r.task), return_exceptions=True)
    for replica in box.replicas:
        await replica.producer.stop()
    for replica_engine in box.engines:
        await replica_engine.dispose()
    for proxy in box.proxies:
        await proxy.stop()
    await engine.dispose()


class Topic:
    """Reads the payments topic from where it ended when the test began."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )
        self.records: dict[str, list[tuple[int, str]]] = defaultdict(list)  # key -> [(offset, event_id)]

    async def __aenter__(self) -> Topic:
        await self._consumer.start()
        partitions = [TopicPartition(topics.PAYMENTS, p) for p in range(TOPIC_PARTITIONS)]
        self._consumer.assign(partitions)
        for tp, end in (await self._consumer.end_offsets(partitions)).items():
            self._consumer.seek(tp, end)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def read_until(self, expected: dict[str, int], *, timeout: float = 30.0) -> dict[str, list[int]]:
        """Per key, the event numbers in partition order (duplicates kept), once every key's
        events 1..n have arrived or the timeout passed."""
        deadline = asyncio.get_running_loop().time() + timeout
        numbers: dict[str, list[int]] = defaultdict(list)
        while asyncio.get_running_loop().time() < deadline:
            if all(set(numbers[k]) >= set(range(1, n + 1)) for k, n in expected.items()):
                break
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    key = record.key.decode()
                    if key in expected:
                        envelope = Envelope.model_validate_json(record.value)
                        numbers[key].append(int(envelope.payload["reason"]))
        return dict(numbers)


def first_copies(numbers: list[int]) -> list[int]:
    """The order a consumer's inbox acts in: each event at its first copy."""
    firsts: list[int] = []
    for n in numbers:
        if n not in firsts:
            firsts.append(n)
    return firsts


async def _aggregates(box: Outbox, count: int) -> list[UUID]:
    ids = [uuid4() for _ in range(count)]
    async with box.sessions() as s, s.begin():
        await s.execute(sa.insert(counters), [{"id": i, "n": 0} for i in ids])
    return ids


async def _write_interleaved(box: Outbox, aggregates: list[UUID], events: int, *, seed: int) -> None:
    """``events`` transactions from eight concurrent writers spread over the replicas, each on
    a random aggregate, so that one aggregate's events come from different replicas and their
    outbox ids interleave with the other aggregates'."""
    rng = random.Random(seed)
    plan = [(box.replicas[rng.randrange(len(box.replicas))], rng.choice(aggregates)) for _ in range(events)]

    async def writer(part: list[tuple[Replica, UUID]]) -> None:
        for replica, aggregate in part:
            await box.write(replica, aggregate)

    await asyncio.gather(*(writer(plan[i::8]) for i in range(8)))


async def _expected(box: Outbox, aggregates: list[UUID]) -> dict[str, int]:
    async with box.sessions() as s:
        rows = (
            await s.execute(sa.select(counters.c.id, counters.c.n).where(counters.c.id.in_(aggregates)))
        ).all()
    return {str(row.id): row.n for row in rows}


def assert_in_commit_order(numbers: dict[str, list[int]], expected: dict[str, int]) -> None:
    for key, n in expected.items():
        assert first_copies(numbers.get(key, [])) == list(range(1, n + 1)), key


async def test_three_relays_on_one_outbox_publish_each_aggregates_events_in_commit_order_and_lose_none(box):
    aggregates = await _aggregates(box, 6)
    for _ in range(3):
        await box.add_replica()
    async with Topic(box.bootstrap) as topic:
        await _write_interleaved(box, aggregates, 150, seed=1)  # a backlog the relays find together
        for replica in box.replicas:
            box.start(replica)
        await _write_interleaved(box, aggregates, 150, seed=2)  # and rows committed while they run
        expected = await _expected(box, aggregates)
        numbers = await topic.read_until(expected)

    assert_in_commit_order(numbers, expected)
    assert sum(map(len, numbers.values())) == 300, "without a failure, each event is published once"
    await box.leader()  # exactly one replica reports that it holds the lease  # exactly one replica reports that it holds the lease


async def test_a_standby_takes_over_within_seconds_when_the_leaders_process_dies_and_loses_nothing(box):
    aggregates = await _aggregates(box, 6)
    for _ in range(3):
        box.start(await box.add_replica())
    async with Topic(box.bootstrap) as topic:
        writing = asyncio.create_task(_write_interleaved(box, aggregates, 400, seed=3))
        for _ in range(2):  # two of the three die in turn, mid-stream
            await asyncio.sleep(0.3)
            dying = await box.leader()
            started = asyncio.get_running_loop().time()
            # kill -9 as PostgreSQL sees it: the session ends with no goodbye, the process is gone.
            await box.cut_holder()
            dying.task.cancel()
            successor = await box.leader(other_than=dying)
            assert successor is not dying
            assert asyncio.get_running_loop().time() - started < TAKEOVER_BOUND
        await writing
        expected = await _expected(box, aggregates)
        numbers = await topic.read_until(expected)

    assert_in_commit_order(numbers, expected)
    assert sum(expected.values()) == 400


async def test_a_leader_cut_from_its_database_stops_leading_and_a_standby_takes_over_in_order(box):
    """A network cut: the old holder's process lives on and believes it leads until it notices;
    its session, and with it the lease and its uncommitted batch, is gone already."""
    aggregates = await _aggregates(box, 6)
    for _ in range(3):
        box.start(await box.add_replica())
    async with Topic(box.bootstrap) as topic:
        writing = asyncio.create_task(_write_interleaved(box, aggregates, 400, seed=4))
        for _ in range(3):
            await asyncio.sleep(0.25)
            cut = await box.leader()
            started = asyncio.get_running_loop().time()
            await box.cut_holder()
            await box.leader(other_than=cut)
            assert asyncio.get_running_loop().time() - started < TAKEOVER_BOUND
        await writing
        expected = await _expected(box, aggregates)
        numbers = await topic.read_until(expected)

    assert_in_commit_order(numbers, expected)
    assert not any(_dead(r) for r in box.replicas), "a cut relay stands by again, it does not stop"
    await box.leader()


async def test_a_cut_leader_hands_the_lease_to_the_standby_in_line_and_queues_behind_it(box):
    """The server grants the lease to the standby waiting for it the moment the holder's session
    ends: no poll (none would come within 30 s here) and no load decides who is next; the old
    holder, back at once, stands in line behind it (its failure may be its own)."""
    for _ in range(2):
        box.start(await box.add_replica(sweep_interval=30.0))
    cut = await box.leader()
    await asyncio.sleep(0.5)  # the other replica is in line
    await box.cut_holder()
    successor = await box.leader(other_than=cut)
    await asyncio.sleep(1.0)  # the old holder is back, standing by
    assert await box.leader() is successor
    assert not _dead(cut), "a cut relay stands by again, it does not stop"


async def test_a_row_committed_on_a_standby_replica_is_published_at_once_not_at_the_next_sweep(box):
    [aggregate] = await _aggregates(box, 1)
    for _ in range(2):
        box.start(await box.add_replica(sweep_interval=30.0))
    async with Topic(box.bootstrap) as topic:
        leader = await box.leader()
        [standby] = [r for r in box.replicas if r is not leader]
        await asyncio.sleep(0.5)  # past the leader's first sweep: from now on it would wait 30 s
        started = asyncio.get_running_loop().time()
        await box.write(standby, aggregate)  # wakes the standby's relay only
        numbers = await topic.read_until({str(aggregate): 1}, timeout=10)
        took = asyncio.get_running_loop().time() - started

    assert numbers == {str(aggregate): [1]}
    assert took < 2.0, f"published after {took:.1f}s: the standby's wake did not reach the leader"


async def test_publish_batch_outside_run_publishes_only_when_no_relay_holds_the_lease(box):
    [aggregate] = await _aggregates(box, 1)
    holder, other = await box.add_replica(), await box.add_replica()
    await box.write(holder, aggregate)
    box.start(holder)
    await box.leader()
    await box.write(other, aggregate)  # the holder is not woken: only its 0.5 s sweep finds it
    assert await other.relay.publish_batch() == 0

    holder.task.cancel()
    await asyncio.gather(holder.task, return_exceptions=True)
    await box.write(other, aggregate)
    assert await box.holder_pid() is None, "a stopped relay gives the lease up at once"
    assert await other.relay.publish_batch() >= 1
