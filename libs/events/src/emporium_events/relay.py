"""The outbox relay: publishes unsent outbox rows to Kafka, one relay per database at a time.

Why one at a time. The Kafka key is the aggregate id, so the order of one aggregate's records in
its partition is the only order consumers get. Two relays each claiming a batch of the same
outbox (the second skipping the rows the first has locked) would publish one order's events in
the order their sends happen to land, not in commit order.

The lease. Every relay opens a connection of its own to the service's database and takes a
session-level advisory lock on it; the one that gets it publishes, the others stand by, each
waiting in the lock's queue in the server (``pg_advisory_lock``). PostgreSQL releases the lock
when that session ends, however it ends: a clean stop, a process killed with ``kill -9`` (the
kernel closes the socket), an administrator's ``pg_terminate_backend``, or a network cut once
the server notices it (TCP keepalives and ``tcp_user_timeout`` on both ends, and
``idle_session_timeout`` / ``idle_in_transaction_session_timeout`` for a holder that is alive
but frozen; see ``_lease_engine``).

The hand-over is the server's, not a clock's. When the holder's session ends, PostgreSQL grants
the lock to the first standby in the queue in the same step, however slow the replicas' hosts
are. A holder that lost its lease to a failure connects again and queues *behind* the standbys
already waiting, so a replica that can publish takes over. (With standbys polling
``pg_try_advisory_lock`` every sweep, the failed holder, retrying after a 0.1 s backoff, won that
race most of the time, even when the failure was its own, its Kafka or its network: a cut holder
took its lease back in 2 runs of the lease tests in 4 on a loaded host, and in every run once
the standbys polled only every 30 s.)
A standby that dies in the queue leaves it as a holder does (its session ends); one frozen when
the lock is granted to it holds it until ``idle_session_timeout`` ends its session.

Fencing. The holder claims, marks and commits its batches *on the lease connection itself*,
never on a pooled one. A statement that runs in that session runs while the lock is held (a
session lock only goes away with its session), so there is nothing to re-check per batch: a
holder whose session was cut cannot claim, and cannot commit the batch it had claimed (its
transaction is rolled back, and its row locks released, before the advisory lock is — a backend
aborts its transaction before it releases its session locks). The next holder therefore finds
every row the old one did not commit as unsent and unlocked, and publishes it again, in order.
Sends the old holder still had in flight may land after that: they are duplicates of events the
new holder publishes too, and an aggregate's first copies still arrive in commit order (the old
holder's idempotent producer delivers a partition's records in the order it sent them, and it
sent them in id order), which is what the consumers' inbox keeps. So a standby need not wait
for the old holder to drain: the database, not a clock, decides who may mark rows sent.

Why ids give commit order for one aggregate. Two transactions that write events of one
aggregate are serialized by the aggregate's row lock (``get_for_update`` in every service),
and each appends its outbox rows after taking that lock, so the later transaction draws its ids
from the sequence after the earlier one committed: higher ids. A transaction of another aggregate
may commit later with a lower id than a row already published; the relay claims by
``sent_at IS NULL``, not from a high-water mark, so such a row is published by the next batch,
never lost, and reorders only rows of different aggregates, whose relative order nobody reads.
It follows that one relay publishing in id order, a batch at a time, each batch acknowledged
before the next is claimed, keeps every aggregate in commit order; the lease makes it one relay.

Why not ownership by partition or key hash. It would let N relays publish at once, but needs a
membership protocol and the same fencing per shard at every rebalance; one relay sends a
500-row batch in one round of produce requests, far above what a service commits, so the lease
buys correctness for no throughput we need.

Waking. Each process wakes its own relay right after a commit that wrote rows (``notify()``).
A standby hands that wake to the holder with one ``NOTIFY`` on a pooled connection (its lease
connection is waiting in the queue; coalesced: one per wake it sees, outside any transaction of
the request); the holder ``LISTEN``s on its lease connection, so a row committed by any replica
is published at once, not at the next sweep. A sweep every ``sweep_interval`` seconds remains the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from emporium_events import tracing
from emporium_events.failpoints import crash_point
from emporium_events.metrics import MessagingMetrics
from emporium_events.outbox import BACKLOG_AND_DEAD_LETTERS, age_seconds
from emporium_events.unit_of_work import psycopg_of

log = logging.getLogger(__name__)

LEASE_KEY = 0x6F7574626F78  # "outbox"; advisory locks are per database, so one key serves every service
CHANNEL = "emporium_outbox"

_TRY_LEASE = sa.select(sa.func.pg_try_advisory_lock(LEASE_KEY))
_TAKE_LEASE = sa.select(sa.func.pg_advisory_lock(LEASE_KEY))  # waits in the lock's queue
_TRY_LEASE_FOR_TRANSACTION = sa.select(sa.func.pg_try_advisory_xact_lock(LEASE_KEY))
_LISTEN = sa.text(f"LISTEN {CHANNEL}")
# One statement locks, marks and returns a batch, oldest first. No SKIP LOCKED: only the lease
# holder claims, and skipping a row someone else holds is exactly how a later event of an
# aggregate would overtake an earlier one. Run on psycopg directly: through SQLAlchemy Core the
# claim of one row cost ~0.5 ms more CPU (bench/results/dbclients). The envelope comes back as
# the text the relay sends (no JSON parse and re-dump per row).
_CLAIM = (
    "UPDATE outbox SET sent_at = clock_timestamp()"
    " WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT %s FOR UPDATE)"
    " RETURNING id, topic, key, event_type, event_id, envelope::text, trace_headers"
)
_NOTIFY = sa.text(f"NOTIFY {CHANNEL}")

# How fast a dead lease holder is noticed. Client side (libpq) and server side (the session's
# settings, sent in the startup packet: no round trip): a peer that stops answering is dropped
# after ~11 s of silence (keepalives 5 s + 3 x 2 s) or 10 s of unacknowledged data.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
_TCP_USER_TIMEOUT_MS = 10_000
# A holder frozen mid-batch (its Kafka sends waiting) keeps the lease at most this long: twice
# the producer's request timeout (15 s, after which a send fails anyway), so that a slow broker
# does not cost the lease.
_IDLE_IN_TRANSACTION_MS = 30_000


class OutboxRelay:
    """Publishes unsent outbox rows to Kafka, oldest first, and marks them sent — while it holds
    its database's outbox lease (see the module's notes); otherwise it stands by.

    Woken by ``notify()`` right after a commit that wrote rows; a sweep every ``sweep_interval``
    seconds catches rows written without a wake or left by a crash. A crash between the Kafka
    ack and the commit of ``sent_at`` publishes the rows again, which the consumers' inbox
    absorbs (at-least-once, never lost).
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        *,
        metrics: MessagingMetrics,
        batch_size: int = 500,
        sweep_interval: float = 1.0,
    ) -> None:
        self._session_factory = session_factory
        self._producer = producer
        self._metrics = metrics
        self._batch_size = batch_size
        self._sweep_interval = sweep_interval
        self._wake = asyncio.Event()
        self._batch_lock = asyncio.Lock()
        self._lease: AsyncConnection | None = None
        self._lease_db: psycopg.AsyncConnection[Any] | None = None  # the lease's psycopg connection
        self._observed = 0.0
        self._backoff = 0.1
        self._tracer = trace.get_tracer("emporium.outbox")
        self._lease_engine = _lease_engine(session_factory, idle_seconds=self._sweep_interval)

    @property
    def leading(self) -> bool:
        """True while this relay holds the lease (it alone publishes its database's outbox)."""
        return self._lease is not None

    def notify(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Stand by for the lease, then publish until cancelled or the lease is lost; again and
        again. Never ends on an error: Kafka or the database being away only delays publishing
        (the rows wait in the outbox), and a holder that fails gives up its lease (its
        connection is closed) so that a replica that can publish may take it."""
        try:
            while True:
                try:
                    async with self._lease_connection() as conn:
                        await self._stand_by(conn)
                        await self._lead(conn)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a background loop must outlive any single failure
                    log.exception("outbox relay failed; retrying in %.1fs", self._backoff)
                    await asyncio.sleep(self._backoff)
                    self._backoff = min(self._backoff * 2, 5.0)
        finally:
            await self._lease_engine.dispose()

    async def publish_batch(self) -> int:
        """Publish up to one batch; returns how many rows were sent.

        On the lease connection while ``run()`` holds the lease; otherwise under the same lock
        taken for this one transaction (``pg_try_advisory_xact_lock``), and nothing (0) while
        another relay holds it."""
        async with self._batch_lock:
            if (conn := self._lease) is not None and (db := self._lease_db) is not None:
                async with conn.begin():
                    rows = await self._claim_and_send(db)
            else:
                async with self._session_factory() as session, session.begin():
                    if not await session.scalar(_TRY_LEASE_FOR_TRANSACTION):
                        return 0
                    rows = await self._claim_and_send(await psycopg_of(await session.connection()))
        for (topic, event_type), n in Counter((row.topic, row.event_type) for row in rows).items():
            self._metrics.published.labels(topic, event_type).inc(n)  # per batch, not per row
        return len(rows)

    # ------------------------------------------------------------------------------ the lease

    @contextlib.asynccontextmanager
    async def _lease_connection(self) -> AsyncIterator[AsyncConnection]:
        conn = await self._lease_engine.connect()
        try:
            yield conn
        except asyncio.CancelledError:
            if self.leading:
                log.info("outbox relay stops and gives up the outbox lease")
            raise
        except Exception as exc:
            if self.leading:
                log.warning("outbox relay lost the outbox lease (%r); standing by", exc)
            raise
        finally:
            self._lease = self._lease_db = None
            self._metrics.outbox_relay_leader.set(0)
            # Closing ends the session, which releases the lease at once (a clean hand-over).
            try:
                await conn.close()
            except (sa.exc.SQLAlchemyError, OSError):  # a cut connection: nothing left to close
                await conn.invalidate()

    async def _stand_by(self, conn: AsyncConnection) -> None:
        """Return once this relay holds the lease; until then pass every wake to the holder."""
        await conn.execution_options(isolation_level="AUTOCOMMIT")  # one round trip per statement
        if not await conn.scalar(_TRY_LEASE):
            log.info("outbox relay stands by: another relay holds the outbox lease")
            await self._wait_in_line(conn)
        await conn.execute(_LISTEN)
        await conn.commit()  # ends SQLAlchemy's autobegun (no-op) transaction, so the level may change
        await conn.execution_options(isolation_level="READ COMMITTED")
        log.info(
            "outbox relay took the outbox lease (backend pid %d); publishing",
            (await psycopg_of(conn)).info.backend_pid,
        )

    async def _wait_in_line(self, conn: AsyncConnection) -> None:
        """Wait in the lease's queue in the server; meanwhile forward wakes, observe the backlog."""
        granted = asyncio.ensure_future(conn.execute(_TAKE_LEASE))
        try:
            while not granted.done():
                await self._observe_backlog_now_and_then()
                woken = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait(
                        (granted, woken), timeout=self._sweep_interval, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    woken.cancel()
                    await asyncio.gather(woken, return_exceptions=True)
                if self._wake.is_set() and not granted.done():
                    self._wake.clear()
                    async with self._session_factory() as session, session.begin():
                        await session.execute(_NOTIFY)
            granted.result()  # a session ended while waiting raises here
        finally:
            if not granted.done():  # leaving the queue: the lease connection is closed next
                granted.cancel()
                await asyncio.gather(granted, return_exceptions=True)

    async def _lead(self, conn: AsyncConnection) -> None:
        listener = self._lease_db = await psycopg_of(conn)
        self._lease = conn
        self._metrics.outbox_relay_leader.set(1)
        while True:
            while await self.publish_batch() == self._batch_size:
                pass
            self._backoff = 0.1
            # Once per sweep interval, woken or not: a relay woken by every commit under load
            # would otherwise never refresh the gauges the alerts read.
            await self._observe_backlog_now_and_then()
            await self._idle(listener)

    async def _idle(self, listener: psycopg.AsyncConnection[Any]) -> None:
        """Until this process commits rows, a standby's NOTIFY arrives, or the sweep is due.
        Listening watches the lease's socket too: a session ended by the server raises here."""
        woken = asyncio.ensure_future(self._wake.wait())
        heard = asyncio.ensure_future(self._notified(listener))
        try:
            done, _ = await asyncio.wait(
                (woken, heard), timeout=self._sweep_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (woken, heard):
                task.cancel()
            await asyncio.gather(woken, heard, return_exceptions=True)
        if heard in done:
            heard.result()
        self._wake.clear()

    async def _notified(self, listener: psycopg.AsyncConnection[Any]) -> None:
        async with contextlib.aclosing(
            listener.notifies(timeout=self._sweep_interval, stop_after=1)
        ) as heard:
            async for _ in heard:
                pass

    # ------------------------------------------------------------------------------ publishing

    async def _claim_and_send(self, conn: psycopg.AsyncConnection[Any]) -> list[_Claimed]:
        # One statement locks, marks and returns the batch; the mark commits only after Kafka
        # acknowledged every row (a failed send raises and rolls it back), so sent_at is the
        # moment publishing started and a crash before the commit publishes the rows again.
        cursor = await conn.execute(_CLAIM, (self._batch_size,))
        rows = sorted((_Claimed(*row) for row in await cursor.fetchall()), key=lambda row: row.id)
        if not rows:
            return rows
        futures = [await self._send(row) for row in rows]
        await asyncio.gather(*futures)
        crash_point("relay.after_send")
        return rows

    async def _send(self, row: _Claimed) -> asyncio.Future[Any]:
        parent = tracing.context_from_carrier(row.trace_headers)
        with self._tracer.start_as_current_span(
            f"{row.topic} publish",
            context=parent,
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": row.topic,
                "messaging.operation.type": "publish",
                "messaging.message.id": str(row.event_id),
            },
        ):
            headers = [("event_type", row.event_type.encode())]
            headers += [(k, v.encode()) for k, v in tracing.current_carrier().items()]
            sent: asyncio.Future[Any] = await self._producer.send(
                row.topic,
                key=row.key.encode(),
                value=row.envelope.encode(),
                headers=headers,
            )
            return sent

    async def _observe_backlog_now_and_then(self) -> None:
        """The outbox backlog and the dead letters awaiting replay, in one statement, once per
        sweep interval (every replica reports them, the holder and the standbys alike)."""
        if time.monotonic() - self._observed < self._sweep_interval:
            return
        self._observed = time.monotonic()
        async with self._session_factory() as session:
            count, oldest, dead = (await session.execute(BACKLOG_AND_DEAD_LETTERS)).one()
        self._metrics.outbox_backlog.set(count)
        self._metrics.outbox_oldest_seconds.set(age_seconds(oldest))
        self._metrics.dead_letters_depth.set(dead)


def _lease_engine(session_factory: async_sessionmaker[AsyncSession], *, idle_seconds: float) -> AsyncEngine:
    """An engine for the lease's own connection (never pooled: closing it must end the session)."""
    bind = session_factory.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        raise TypeError("the outbox relay needs a session factory bound to an AsyncEngine")
    # A healthy holder runs a statement at least every sweep interval, and a standby is inside
    # one (its wait in the queue), so a session idle far longer than that belongs to a frozen
    # process: the server ends it.
    idle_session_ms = int(max(10.0, 5 * idle_seconds) * 1000)
    settings = {
        "tcp_keepalives_idle": _KEEPALIVES["keepalives_idle"],
        "tcp_keepalives_interval": _KEEPALIVES["keepalives_interval"],
        "tcp_keepalives_count": _KEEPALIVES["keepalives_count"],
        "tcp_user_timeout": _TCP_USER_TIMEOUT_MS,
        "idle_session_timeout": idle_session_ms,
        "idle_in_transaction_session_timeout": _IDLE_IN_TRANSACTION_MS,
        # Marking rows sent need not wait for the WAL flush: a mark lost in a server crash only
        # publishes those rows again, which the consumers' inbox absorbs (at-least-once either
        # way). One fsync less per relayed batch, on every service's hot path.
        "synchronous_commit": "off",
        # A standby waits in the lease's queue for as long as the holder holds it.
        "lock_timeout": 0,
        "statement_timeout": 0,
    }
    return create_async_engine(
        bind.url,
        poolclass=NullPool,
        connect_args={
            **_KEEPALIVES,
            "tcp_user_timeout": _TCP_USER_TIMEOUT_MS,
            "options": " ".join(f"-c {name}={value}" for name, value in settings.items()),
            "application_name": "emporium-outbox-relay",
        },
    )


class _Claimed(NamedTuple):
    """An outbox row the relay claimed (the columns of ``_CLAIM``)."""

    id: int
    topic: str
    key: str
    event_type: str
    event_id: UUID
    envelope: str  # the JSON text sent as the record's value
    trace_headers: dict[str, str]
