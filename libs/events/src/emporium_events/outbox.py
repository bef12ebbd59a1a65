"""Transactional outbox, inbox de-duplication and the unit of work that writes both.

A handler's state change and the events it emits commit in one PostgreSQL transaction; the
relay (``emporium_events.relay``) publishes unsent outbox rows to Kafka afterwards. Consumers claim ``(consumer, event_id)``
in the inbox in the same transaction as their effect, so a redelivered event changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Self
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium_events import tracing
from emporium_events.contracts import Event
from emporium_events.envelope import Envelope
from emporium_events.failpoints import crash_point
from emporium_events.topics import topic_for

log = logging.getLogger(__name__)

messaging_metadata = sa.MetaData()

outbox = sa.Table(
    "outbox",
    messaging_metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("envelope", JSONB, nullable=False),
    sa.Column("trace_headers", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Index("outbox_unsent", "id", postgresql_where=sa.text("sent_at IS NULL")),
)

inbox = sa.Table(
    "inbox",
    messaging_metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

dead_letters = sa.Table(
    "dead_letters",
    messaging_metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("consumer", sa.Text, nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("key", sa.LargeBinary),
    sa.Column("value", sa.LargeBinary),
    sa.Column("headers", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("error_type", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("replayed_at", sa.DateTime(timezone=True)),
)


# Statements run for every event are built once: building one and its cache key costs more
# CPU than running it (bench/results/profile).
_CLAIM = insert(inbox).on_conflict_do_nothing().returning(inbox.c.event_id)
_APPEND = sa.insert(outbox).values(created_at=sa.func.clock_timestamp())  # not now(): the transaction's start


class UnitOfWork:
    """One database transaction: the aggregate change, the inbox claim and the outbox rows.

    Only the unit of work commits. After each commit it calls ``on_commit(events_written)``.
    Services subclass it to add their repositories (built from ``self.session``).
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        producer_name: str,
        on_commit: Callable[[int], None] = lambda published: None,
    ) -> None:
        self._session_factory = session_factory
        self.producer_name = producer_name
        self._on_commit = on_commit
        self.causation: Envelope | None = None
        self._published = 0

    async def __aenter__(self) -> Self:
        self.session = self._session_factory()
        await self.session.begin()
        self._published = 0
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Anything not committed explicitly is rolled back; the connection goes back either way.
        try:
            await self.session.rollback()
        finally:
            await self.session.close()

    async def commit(self) -> None:
        """Commit, then tell the service how many events it wrote (to wake the outbox relay)."""
        await self.session.commit()
        crash_point("uow.after_commit")
        published, self._published = self._published, 0
        self._on_commit(published)

    async def rollback(self) -> None:
        await self.session.rollback()

    async def claim(self, *, consumer: str, envelope: Envelope) -> bool:
        """Record the event as seen by ``consumer``; False when it was seen before (a duplicate)."""
        result = await self.session.execute(
            _CLAIM, {"consumer": consumer, "event_id": envelope.event_id, "event_type": envelope.event_type}
        )
        return result.first() is not None

    async def claim_many(self, *, consumer: str, envelopes: list[Envelope]) -> set[UUID]:
        """``claim`` for many events with one statement; returns the ids seen for the first time."""
        if not envelopes:
            return set()
        result = await self.session.execute(
            _CLAIM,
            [{"consumer": consumer, "event_id": e.event_id, "event_type": e.event_type} for e in envelopes],
        )
        return set(result.scalars())

    async def publish(
        self, event: Event, *, aggregate_id: UUID | str, correlation_id: str | None = None
    ) -> Envelope:
        """Add ``event`` to the outbox in this transaction; saga correlation follows the cause."""
        cause = self.causation
        envelope = Envelope.wrap(
            event,
            producer=self.producer_name,
            aggregate_id=str(aggregate_id),
            correlation_id=correlation_id or (cause.correlation_id if cause else None) or str(aggregate_id),
            causation_id=str(cause.event_id) if cause else None,
        )
        await self.session.execute(
            _APPEND,
            {
                "event_id": envelope.event_id,
                "topic": topic_for(envelope.event_type),
                "key": envelope.aggregate_id,
                "event_type": envelope.event_type,
                "envelope": envelope.model_dump(mode="json"),
                "trace_headers": tracing.current_carrier(),
            },
        )
        self._published += 1
        return envelope


_BACKLOG = sa.select(sa.func.count(), sa.func.min(outbox.c.created_at)).where(outbox.c.sent_at.is_(None))
# The relay's gauges: backlog, oldest unsent row and dead letters awaiting replay, in one statement.
BACKLOG_AND_DEAD_LETTERS = _BACKLOG.add_columns(
    sa.select(sa.func.count())
    .select_from(dead_letters)
    .where(dead_letters.c.replayed_at.is_(None))
    .scalar_subquery()
)


async def backlog(session_factory: async_sessionmaker[AsyncSession]) -> tuple[int, float]:
    """(unsent rows, age in seconds of the oldest unsent row)."""
    async with session_factory() as session:
        count, oldest = (await session.execute(_BACKLOG)).one()
    return count, age_seconds(oldest)


def age_seconds(oldest: datetime | None) -> float:
    return (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0


def __getattr__(name: str) -> Any:
    # The relay moved to its own module (it imports this one); old imports keep working.
    if name == "OutboxRelay":
        from emporium_events.relay import OutboxRelay

        return OutboxRelay
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
