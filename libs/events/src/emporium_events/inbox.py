"""Inbox de-duplication: a consumer claims ``(consumer, event_id)`` in the same transaction as
the event's effect, so a redelivered event changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from emporium_events.envelope import Envelope
from emporium_events.tables import inbox

# Built once: building a statement and its cache key costs more CPU than running it.
_CLAIM = insert(inbox).on_conflict_do_nothing().returning(inbox.c.event_id)


async def claim(
    session: AsyncConnection | AsyncSession, *, consumer: str, envelopes: Sequence[Envelope]
) -> set[UUID]:
    """Record the events as seen by ``consumer`` with one statement; returns the ids seen for
    the first time (the others are duplicates)."""
    if not envelopes:
        return set()
    result = await session.execute(
        _CLAIM,
        [{"consumer": consumer, "event_id": e.event_id, "event_type": e.event_type} for e in envelopes],
    )
    return set(result.scalars())
