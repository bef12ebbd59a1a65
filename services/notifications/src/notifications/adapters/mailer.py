"""E-mail delivery, decoupled from event handling: handlers record a PENDING notification in the
inbox transaction; this sender delivers pending mail over SMTP with retries and backoff, so an
SMTP outage delays mail but never blocks or dead-letters an event. Delivery is at-least-once:
a crash between the SMTP answer and the ``SENT`` update can send one mail twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import sqlalchemy as sa
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium_events import correlation, tracing
from notifications.adapters.orm import notifications as n

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("emporium.notifications.mail")

MAX_ATTEMPTS = 10


class SmtpSender:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        poll_seconds: float = 2.0,
    ) -> None:
        self._host, self._port, self._from = host, port, sender
        self._sessions = sessions
        self._poll = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="smtp-sender")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            try:
                while await self.send_due() > 0:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be away: the mail waits, the loop lives
                log.warning("mail sender: %r; retrying", exc)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
            except TimeoutError:
                pass
            self._wake.clear()

    async def send_due(self, limit: int = 50) -> int:
        """Send up to ``limit`` due mails, each in its own transaction (a failure later in the
        batch never un-marks a mail already sent), over one SMTP connection for the pass;
        returns how many were tried."""
        sessions: async_sessionmaker[AsyncSession] = self._sessions()
        tried = 0
        smtp: aiosmtplib.SMTP | None = None
        try:
            while tried < limit:
                async with sessions() as session, session.begin():
                    row = (await session.execute(self._next_due)).first()
                    if row is None:
                        return tried
                    smtp = await self._deliver(session, row, smtp)
                tried += 1
            return tried
        finally:
            if smtp is not None:
                await _close(smtp)

    _next_due = (
        sa.select(
            n.c.id, n.c.order_id, n.c.email_to, n.c.subject, n.c.body, n.c.email_attempts, n.c.trace_headers
        )
        .where(n.c.email_status == "PENDING", n.c.next_attempt_at <= sa.func.now())
        .order_by(n.c.next_attempt_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )

    async def _deliver(
        self, session: AsyncSession, row: sa.Row[*tuple[Any, ...]], smtp: aiosmtplib.SMTP | None
    ) -> aiosmtplib.SMTP | None:
        """Send one mail on ``smtp`` (connecting if needed); returns the connection to reuse,
        or None after an error (the next mail connects afresh). The span joins the trace of the
        event that asked for the mail (the order's trace)."""
        correlation.order_id.set(str(row.order_id))
        with _tracer.start_as_current_span(
            "send email",
            context=tracing.context_from_carrier(row.trace_headers),
            kind=trace.SpanKind.CLIENT,
            attributes={
                "network.protocol.name": "smtp",
                "server.address": self._host,
                "server.port": self._port,
                "emporium.notification.id": str(row.id),
            },
        ) as span:
            smtp = await self._send_one(session, row, smtp)
            if smtp is None:
                span.set_status(trace.Status(trace.StatusCode.ERROR, "not delivered; retried later"))
            return smtp

    async def _send_one(
        self, session: AsyncSession, row: sa.Row[*tuple[Any, ...]], smtp: aiosmtplib.SMTP | None
    ) -> aiosmtplib.SMTP | None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self._from, row.email_to, row.subject
        message.set_content(row.body)
        try:
            if smtp is None:
                smtp = aiosmtplib.SMTP(hostname=self._host, port=self._port, timeout=5)
                await smtp.connect()
            await smtp.send_message(message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            if smtp is not None:
                await _close(smtp)
            attempts = row.email_attempts + 1
            status = "FAILED" if attempts >= MAX_ATTEMPTS else "PENDING"
            delay = min(2**attempts, 300)
            log.warning("mail to %s failed (attempt %d): %r", row.email_to, attempts, exc)
            await session.execute(
                sa.update(n)
                .where(n.c.id == row.id)
                .values(
                    email_attempts=attempts,
                    email_status=status,
                    email_error=repr(exc)[:500],
                    next_attempt_at=sa.func.now() + sa.text(f"interval '{delay} seconds'"),
                )
            )
            return None
        await session.execute(
            sa.update(n)
            .where(n.c.id == row.id)
            .values(email_status="SENT", email_attempts=row.email_attempts + 1, sent_at=sa.func.now())
        )
        return smtp


async def _close(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.quit()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()
