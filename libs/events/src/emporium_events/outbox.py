"""The transactional outbox: rows written in the handler's transaction, read by the relay
(``emporium_events.relay``), which publishes them to Kafka after the commit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from emporium_events import tracing
from emporium_events.envelope import Envelope
from emporium_events.tables import dead_letters, outbox
from emporium_events.topics import topic_for

# Built once: building a statement and its cache key costs more CPU than running it. RETURNING
# makes SQLAlchemy send many rows as one multi-row INSERT ("insertmanyvalues") rather than one
# INSERT per row; created_at is clock_timestamp(), not now() (the transaction's start).
_APPEND = sa.insert(outbox).values(created_at=sa.func.clock_timestamp()).returning(outbox.c.id)


def row(envelope: Envelope, trace_headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The outbox row of ``envelope``, traced under ``trace_headers`` (by default the trace
    context current at write time)."""
    return {
        "event_id": envelope.event_id,
        "topic": topic_for(envelope.event_type),
        "key": envelope.aggregate_id,
        "event_type": envelope.event_type,
        "envelope": envelope.model_dump(mode="json"),
        "trace_headers": tracing.current_carrier() if trace_headers is None else trace_headers,
    }


async def append(session: AsyncConnection | AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Add outbox rows (from ``row``) in the session's transaction, with one statement."""
    if rows:
        await session.execute(_APPEND, rows)


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
