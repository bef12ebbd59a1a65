"""Inbox de-duplication: a consumer claims ``(consumer, event_id)`` in the same transaction as
the event's effect, so a redelivered event changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg

from emporium_events.envelope import Envelope

# One statement for the batch, straight on psycopg (the claim runs in every consumer
# transaction; SQLAlchemy Core added ~0.1-0.5 ms of CPU to it, bench/results/dbclients). The
# same event twice in one batch is claimed once: DO NOTHING skips the second row. Arrays go
# binary (%b): psycopg writes a text array element by element in Python.
_CLAIM = (
    "INSERT INTO inbox (consumer, event_id, event_type)"
    " SELECT %s, e, t FROM unnest(%b::uuid[], %b::text[]) AS v(e, t)"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)


async def claim(
    connection: psycopg.AsyncConnection[Any], *, consumer: str, envelopes: Sequence[Envelope]
) -> set[UUID]:
    """Record the events as seen by ``consumer`` with one statement; returns the ids seen for
    the first time (the others are duplicates)."""
    if not envelopes:
        return set()
    cursor = await connection.execute(
        _CLAIM, (consumer, [e.event_id for e in envelopes], [e.event_type for e in envelopes])
    )
    return {event_id for (event_id,) in await cursor.fetchall()}
