"""Operator endpoints every service serves (behind the gateway's admin role): its dead letters,
replaying them, and its outbox backlog."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from aiokafka.errors import KafkaError
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from emporium_events import dead_letters as letters
from emporium_events.kafka import replay
from emporium_events.outbox import backlog

router = APIRouter(prefix="/admin", tags=["admin"])


class DeadLetter(BaseModel):
    id: int
    consumer: str
    topic: str
    partition: int
    offset: int
    key: str | None
    error_type: str
    error: str
    attempts: int
    created_at: datetime
    replayed_at: datetime | None


class Replayed(BaseModel):
    replayed: list[int]


class OutboxBacklog(BaseModel):
    service: str
    unsent: int
    oldest_age_seconds: float


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


def _out(row: sa.Row[Any]) -> DeadLetter:
    values = dict(row._mapping)
    values["key"] = row.key.decode(errors="replace") if row.key is not None else None
    return DeadLetter.model_validate({k: values[k] for k in DeadLetter.model_fields})


@router.get("/dead-letters", response_model=list[DeadLetter])
async def list_dead_letters(
    request: Request,
    include_replayed: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetter]:
    async with _runtime(request).session_factory() as session:
        rows = await letters.listing(session, include_replayed=include_replayed, limit=limit)
    return [_out(r) for r in rows]


@router.post("/dead-letters/{letter_id}/replay", response_model=Replayed)
async def replay_one(letter_id: int, request: Request) -> Replayed:
    return Replayed(replayed=await _replay(request, letter_id=letter_id))


@router.post("/dead-letters/replay", response_model=Replayed)
async def replay_all(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> Replayed:
    """Replays up to ``limit`` letters, oldest first; call again for the rest."""
    return Replayed(replayed=await _replay(request, limit=limit))


async def _replay(request: Request, *, letter_id: int | None = None, limit: int = 1) -> list[int]:
    runtime = _runtime(request)
    if not runtime.kafka_connected:
        raise HTTPException(503, "Kafka is not reachable; nothing was replayed", headers={"Retry-After": "5"})
    done: list[int] = []
    async with runtime.session_factory() as session, session.begin():
        rows = await letters.lock_for_replay(session, letter_id=letter_id, limit=limit)
        if letter_id is not None and not rows:
            raise HTTPException(404, f"dead letter {letter_id} does not exist")
        for row in rows:
            try:
                await replay(runtime.producer, row)
            except KafkaError as exc:
                if not done:
                    raise HTTPException(
                        503, f"Kafka refused the replay: {exc!r}", headers={"Retry-After": "5"}
                    ) from exc
                break  # mark what went out; the rest stays for the next call
            done.append(row.id)
        if done:
            await letters.mark_replayed(session, done)
    return done


@router.get("/outbox", response_model=OutboxBacklog)
async def outbox_backlog(request: Request) -> OutboxBacklog:
    runtime = _runtime(request)
    unsent, oldest = await backlog(runtime.session_factory)
    return OutboxBacklog(service=runtime.service, unsent=unsent, oldest_age_seconds=round(oldest, 3))
