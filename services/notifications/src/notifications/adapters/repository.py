"""Writes: notifications as the handlers record them, and the mail queue the sender works on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from notifications.adapters.orm import notifications as n
from notifications.domain.model import Notification


class NotificationRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add_many(self, notifications: Sequence[tuple[Notification, dict[str, str]]]) -> int:
        """One INSERT for all of them; an order's second notification of one type is left out
        (``one_notification_per_order_and_type``). Returns how many were recorded."""
        if not notifications:
            return 0
        rows = [
            {
                **asdict(note),
                "email_status": "PENDING" if note.email_to else "SKIPPED",
                "trace_headers": carrier,
            }
            for note, carrier in notifications
        ]
        return len((await self._connection.execute(_ADD, rows)).all())


# RETURNING makes SQLAlchemy send many rows as one multi-row INSERT ("insertmanyvalues").
_ADD = insert(n).on_conflict_do_nothing(constraint="one_notification_per_order_and_type").returning(n.c.id)


@dataclass(frozen=True)
class OutgoingMail:
    id: UUID
    order_id: UUID
    email_to: str
    subject: str
    body: str
    attempts: int
    trace_headers: dict[str, str] | None


@dataclass(frozen=True)
class MailFailure:
    id: UUID
    attempts: int
    status: str  # PENDING (tried again in retry_in seconds) or FAILED (given up)
    error: str
    retry_in: int


@dataclass
class Settlement:
    """What became of the mails of one claim: sent, failed (each with its retry), or released
    untried (due again at once, no attempt counted)."""

    token: UUID
    sent: list[UUID] = field(default_factory=list)
    failed: list[MailFailure] = field(default_factory=list)
    released: list[UUID] = field(default_factory=list)


class MailQueue:
    """The pending mail, for the sender. A claim is a lease: the claimed mails' next attempt
    moves past the lease and they carry the claim's token, so no other sender takes them until
    the lease ends, and a claim whose sender died ends by itself. Only the holder of the token
    settles a mail. No transaction stays open while SMTP talks: every method is one statement,
    run in autocommit (one round trip each, no BEGIN or COMMIT)."""

    def __init__(self, sessions: Callable[[], async_sessionmaker[AsyncSession]]) -> None:
        self._sessions = sessions

    async def claim(self, *, token: UUID, limit: int, lease: timedelta) -> list[OutgoingMail]:
        """Up to ``limit`` due mails, the longest waiting first, skipping any another sender is
        claiming this instant (SKIP LOCKED: concurrent claims take disjoint sets)."""
        rows = await self._run(_CLAIM, {"token": token, "limit": limit, "lease": lease})
        return [OutgoingMail(**row) for row in rows]

    async def settle(self, settlement: Settlement) -> None:
        """One statement per outcome that has mails. Running it again changes nothing (the
        first run cleared the token)."""
        token = settlement.token
        if settlement.sent:
            await self._run(_MARK_SENT, {"token": token, "ids": settlement.sent})
        if settlement.failed:
            failed = settlement.failed
            await self._run(
                _RECORD_FAILURES,
                {
                    "token": token,
                    "ids": [f.id for f in failed],
                    "attempts": [f.attempts for f in failed],
                    "statuses": [f.status for f in failed],
                    "errors": [f.error for f in failed],
                    "retry_in": [f.retry_in for f in failed],
                },
            )
        if settlement.released:
            await self._run(_RELEASE, {"token": token, "ids": settlement.released})

    async def _run(self, statement: sa.Executable, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self._sessions()() as session:
            conn = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            result = await conn.execute(statement, params)
            return [dict(row) for row in result.mappings()] if result.returns_rows else []


# The statements, built once (building one costs more CPU than running it).
_due = (
    sa.select(n.c.id)
    .where(n.c.email_status == "PENDING", n.c.next_attempt_at <= sa.func.now())
    .order_by(n.c.next_attempt_at)
    .limit(sa.bindparam("limit", type_=sa.Integer))
    .with_for_update(skip_locked=True)
    .cte("due")
)
_CLAIM = (
    sa.update(n)
    .where(n.c.id == _due.c.id)
    .values(
        claim_token=sa.bindparam("token", type_=sa.Uuid),
        next_attempt_at=sa.func.now() + sa.bindparam("lease", type_=sa.Interval),
    )
    .returning(
        n.c.id,
        n.c.order_id,
        n.c.email_to,
        n.c.subject,
        n.c.body,
        n.c.email_attempts.label("attempts"),
        n.c.trace_headers,
    )
)
_held = (
    n.c.id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.Uuid))),
    n.c.claim_token == sa.bindparam("token", type_=sa.Uuid),
)
_MARK_SENT = (
    sa.update(n)
    .where(*_held)
    .values(
        email_status="SENT", email_attempts=n.c.email_attempts + 1, sent_at=sa.func.now(), claim_token=None
    )
)
_RELEASE = sa.update(n).where(*_held).values(next_attempt_at=sa.func.now(), claim_token=None)
# Each failed mail's own attempts, status, error and retry, from arrays.
_RECORD_FAILURES = sa.text(
    "UPDATE notifications SET email_attempts = f.attempts, email_status = f.status,"
    " email_error = f.error, next_attempt_at = now() + f.retry_in * interval '1 second',"
    " claim_token = NULL"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:attempts AS integer[]), CAST(:statuses AS text[]),"
    " CAST(:errors AS text[]), CAST(:retry_in AS integer[])) AS f(id, attempts, status, error, retry_in)"
    " WHERE notifications.id = f.id AND notifications.claim_token = :token"
)
