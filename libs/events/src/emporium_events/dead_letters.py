"""The queries over a service's ``dead_letters`` table that its operators' routes need."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from emporium_events.tables import dead_letters


async def listing(session: AsyncSession, *, include_replayed: bool, limit: int) -> Sequence[sa.Row[Any]]:
    """Oldest first; only those awaiting replay unless ``include_replayed``."""
    query = sa.select(dead_letters).order_by(dead_letters.c.id).limit(limit)
    if not include_replayed:
        query = query.where(dead_letters.c.replayed_at.is_(None))
    return (await session.execute(query)).all()


async def lock_for_replay(
    session: AsyncSession, *, letter_id: int | None = None, limit: int = 1
) -> Sequence[sa.Row[Any]]:
    """Letter ``letter_id`` (replayed or not), or else up to ``limit`` awaiting replay, oldest
    first, row-locked for the transaction (two operators never replay one letter at once)."""
    which = dead_letters.c.id == letter_id if letter_id is not None else dead_letters.c.replayed_at.is_(None)
    query = sa.select(dead_letters).where(which).order_by(dead_letters.c.id).limit(limit).with_for_update()
    return (await session.execute(query)).all()


async def mark_replayed(session: AsyncSession, ids: Sequence[int]) -> None:
    await session.execute(
        sa.update(dead_letters).where(dead_letters.c.id.in_(ids)).values(replayed_at=sa.func.now())
    )
