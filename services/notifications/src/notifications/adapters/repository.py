"""Writes: notifications as the handlers record them, and the mail queue the sender works on.

What runs for every batch goes straight to psycopg, without SQLAlchemy's execution layer
(SQLAlchemy Core cost ~95 µs of client CPU per execute over raw psycopg, bench/results/dbclients;
a batch of one mail cost ~2.3 ms of client CPU in the database claim and settle): the handlers'
insert of a batch's notifications, on the unit of work's ``db`` in its transaction, and the
sender's claim and settle, on a pooled connection of their own in autocommit. The views and the
admin's statements stay on SQLAlchemy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium_kit.db import autocommit
from notifications.domain.model import Notification


class NotificationRepository:
    def __init__(self, db: psycopg.AsyncConnection[Any]) -> None:
        self._db = db

    async def add_many(self, notifications: Sequence[tuple[Notification, dict[str, str]]]) -> int:
        """One INSERT for all of them; an order's second notification of one type is left out
        (``one_notification_per_order_and_type``; within a batch the first one wins). Returns how
        many were recorded."""
        if not notifications:
            return 0
        cursor = await self._db.execute(
            _ADD,
            (
                [note.id for note, _ in notifications],
                [note.customer_id for note, _ in notifications],
                [note.order_id for note, _ in notifications],
                [note.type for note, _ in notifications],
                [note.subject for note, _ in notifications],
                [note.body for note, _ in notifications],
                [note.email_to for note, _ in notifications],
                ["PENDING" if note.email_to else "SKIPPED" for note, _ in notifications],
                [json.dumps(carrier, separators=(",", ":")) for _, carrier in notifications],
            ),
        )
        return cursor.rowcount  # the rows inserted: DO NOTHING counts none for a conflict


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
    settles a mail. No transaction stays open while SMTP talks: every statement runs in
    autocommit (its own transaction, one round trip each, no BEGIN or COMMIT), on a pooled
    connection taken without a session."""

    def __init__(self, sessions: Callable[[], async_sessionmaker[AsyncSession]]) -> None:
        self._sessions = sessions  # resolved per call: the engine exists only once the service runs

    async def claim(self, *, token: UUID, limit: int, lease: timedelta) -> list[OutgoingMail]:
        """Up to ``limit`` due mails, the longest waiting first, skipping any another sender is
        claiming this instant (SKIP LOCKED: concurrent claims take disjoint sets)."""
        async with self._autocommit() as db:
            cursor = await db.execute(_CLAIM, (limit, lease, token))
            return [OutgoingMail(*row) for row in await cursor.fetchall()]

    async def settle(self, settlement: Settlement) -> None:
        """One statement per outcome that has mails, each its own transaction. Running it again
        changes nothing (the first run cleared the token)."""
        token, failed = settlement.token, settlement.failed
        if not (settlement.sent or failed or settlement.released):
            return
        async with self._autocommit() as db:
            if settlement.sent:
                await db.execute(_MARK_SENT, (settlement.sent, token))
            if failed:
                await db.execute(
                    _RECORD_FAILURES,
                    (
                        [f.id for f in failed],
                        [f.attempts for f in failed],
                        [f.status for f in failed],
                        [f.error for f in failed],
                        [f.retry_in for f in failed],
                        token,
                    ),
                )
            if settlement.released:
                await db.execute(_RELEASE, (settlement.released, token))

    def _autocommit(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return autocommit(self._sessions())


# Raw, per batch (why: the module's docstring), built once. Arrays go as %b, binary: psycopg
# writes a text array element by element in Python, several times slower.

# Raw, per batch of events: the notifications in one INSERT, in the batch's order (WITH
# ORDINALITY: of two with one order and type, the first is kept), the trace headers as JSON text.
_ADD = (
    "INSERT INTO notifications"
    " (id, customer_id, order_id, type, subject, body, email_to, email_status, trace_headers)"
    " SELECT i, c, o, t, s, b, e, st, th::jsonb"
    " FROM unnest(%b::uuid[], %b::uuid[], %b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[],"
    " %b::text[], %b::text[]) WITH ORDINALITY AS v(i, c, o, t, s, b, e, st, th, n) ORDER BY n"
    " ON CONFLICT ON CONSTRAINT one_notification_per_order_and_type DO NOTHING"
)
# Raw, per pass of the sender: claim up to a limit of due mails, the longest waiting first,
# skipping those another claim holds locked; their next attempt moves past the lease and they
# carry the token. 'PENDING' is written out, so that the partial index on pending mail
# (notifications_email_pending) serves a prepared statement's generic plan too.
_CLAIM = (
    "WITH due AS (SELECT id FROM notifications"
    " WHERE email_status = 'PENDING' AND next_attempt_at <= now()"
    " ORDER BY next_attempt_at LIMIT %s::integer FOR UPDATE SKIP LOCKED)"
    " UPDATE notifications SET next_attempt_at = now() + %s::interval, claim_token = %s::uuid"
    " FROM due WHERE notifications.id = due.id"
    " RETURNING notifications.id, notifications.order_id, notifications.email_to,"
    " notifications.subject, notifications.body, notifications.email_attempts,"
    " notifications.trace_headers"
)
# Raw, per pass: the settle's statements touch only the mails that still carry the claim's token.
_MARK_SENT = (
    "UPDATE notifications SET email_status = 'SENT', email_attempts = email_attempts + 1,"
    " sent_at = now(), claim_token = NULL"
    " WHERE id = ANY(%b::uuid[]) AND claim_token = %s::uuid"
)
_RELEASE = (
    "UPDATE notifications SET next_attempt_at = now(), claim_token = NULL"
    " WHERE id = ANY(%b::uuid[]) AND claim_token = %s::uuid"
)
# Each failed mail's own attempts, status, error and retry, from arrays.
_RECORD_FAILURES = (
    "UPDATE notifications SET email_attempts = f.attempts, email_status = f.status,"
    " email_error = f.error, next_attempt_at = now() + f.retry_in * interval '1 second',"
    " claim_token = NULL"
    " FROM unnest(%b::uuid[], %b::integer[], %b::text[], %b::text[], %b::integer[])"
    " AS f(id, attempts, status, error, retry_in)"
    " WHERE notifications.id = f.id AND notifications.claim_token = %s::uuid"
)
