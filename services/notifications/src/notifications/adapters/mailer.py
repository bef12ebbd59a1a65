"""E-mail delivery, decoupled from event handling: handlers record a PENDING notification in the
inbox transaction; this sender delivers pending mail over SMTP with retries and backoff, so an
SMTP outage delays mail but never blocks or dead-letters an event.

A pass claims up to ``batch_size`` due mails with one statement, sends them over the sender's SMTP
session and settles them with one statement per outcome (``MailQueue``: normally one, all sent).
No transaction is open while SMTP talks. The session outlives the pass: it is kept for the next
ones until it has been idle ``idle_seconds`` (5 s), and closed on stop. A claim is a lease of
``lease`` (90 s): replicas claim disjoint batches, and the mails of a sender that died are due
again when its lease ends.

Delivery is at least once. Never lost: a mail stays PENDING until it is marked SENT, or FAILED
after ``MAX_ATTEMPTS`` failed attempts, and a lease ends by itself. Sent twice only where the
outcome of a send is lost:

- the server accepted the message (250 after the final dot), and before the SENT mark was
  written the process died, or the database stayed away until the lease ended (the mark is
  retried meanwhile): the mail is sent again once the lease ends;
- the server took the message but its answer never came: after a timeout the attempt is
  recorded as failed and retried after its backoff; after a connection cut it is sent again at
  once on a new session (as is a mail whose kept session the server had closed meanwhile, which
  no server took); when the sender was stopped while waiting, again once the lease ends;
- a batch outlived its lease (its settling statement took longer than the lease's ~10 s of
  spare time, below), and another sender claimed and sent its unsettled mails too.

Otherwise two senders never send one mail: a claim locks what it takes (SKIP LOCKED), and a
sender settles only mails that still carry its claim's token.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from uuid import uuid4

import aiosmtplib
from opentelemetry import trace
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium_events import correlation, tracing
from notifications.adapters.mail_message import MailWriter
from notifications.adapters.repository import MailFailure, MailQueue, OutgoingMail, Settlement

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("emporium.notifications.mail")

MAX_ATTEMPTS = 10
BATCH_SIZE = 50
SMTP_TIMEOUT = 5.0  # seconds, per SMTP command
# No mail is started after a third of the lease (30 s). One mail at its worst (every command of a
# send timing out, then a reconnect and the same again) takes ~50 s, so a batch is settled inside
# its 90 s lease unless the settling statement takes more than the ~10 s left.
LEASE = timedelta(seconds=90)
# A session is kept this long after its last mail. At ordinary rates a batch holds one or two
# mails, and a session per batch (connect, EHLO, QUIT, and aiosmtplib's getfqdn in a thread) cost
# 1.5 ms of CPU for a batch of one, against 0.7 ms on a kept session (2,000 mails to the devstack
# sink, time.process_time). Far inside servers' idle timeouts (RFC 5321 4.5.3.2.7: 5 minutes).
IDLE_SECONDS = 5.0

# ValueError: an address or a subject that cannot be written or sent safely (MailWriter, aiosmtplib)
_SMTP_ERRORS = (aiosmtplib.SMTPException, OSError, ValueError)


@dataclass(frozen=True)
class MailMetrics:
    mails: Counter
    sessions: Counter
    batch_seconds: Histogram

    @classmethod
    def for_registry(cls, registry: CollectorRegistry = REGISTRY) -> MailMetrics:
        """One set per registry (a process may build its app more than once in tests)."""
        if registry not in _BUILT:
            _BUILT[registry] = cls(
                mails=Counter(
                    "emporium_notifications_mails",
                    "Mails the sender settled, by outcome (sent, failed, released untried).",
                    ["outcome"],
                    registry=registry,
                ),
                sessions=Counter(
                    "emporium_notifications_smtp_sessions",
                    "SMTP sessions the sender opened: each is kept across batches until idle for"
                    " NOTIFICATIONS_SMTP_IDLE_SECONDS; more when a server drops one or an answer times out.",
                    registry=registry,
                ),
                batch_seconds=Histogram(
                    "emporium_notifications_mail_batch_seconds",
                    "Time to send one claimed batch of mail over SMTP and settle it.",
                    registry=registry,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                ),
            )
            for outcome in ("sent", "failed", "released"):
                _BUILT[registry].mails.labels(outcome)
        return _BUILT[registry]


_BUILT: dict[CollectorRegistry, MailMetrics] = {}


class _Unreachable(Exception):
    """The SMTP server did not take a connection: nothing more of the batch is tried."""


class SmtpSender:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        poll_seconds: float = 2.0,
        batch_size: int = BATCH_SIZE,
        lease: timedelta = LEASE,
        idle_seconds: float = IDLE_SECONDS,
        metrics: MailMetrics | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._writer = MailWriter(sender)  # a sender that cannot be written fails here, not per mail
        self._queue = MailQueue(sessions)
        self._poll = poll_seconds
        self._batch_size = batch_size
        self._lease = lease
        self._metrics = metrics or MailMetrics.for_registry()
        self._smtp = _Session(host, port, idle_seconds=idle_seconds, on_open=self._metrics.sessions.inc)
        self._one_pass = asyncio.Lock()  # passes share the session: one at a time
        self._owed: list[Settlement] = []  # outcomes the database has not taken yet
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Besides the cancel: Python 3.11's wait_for (under aiosmtplib) loses a cancel that meets
        # a server answer, and the loop must end anyway.
        self._stopping = False

    def notify(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="smtp-sender")

    async def stop(self) -> None:
        """Ends the loop, then closes the kept session (QUIT)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():  # stop() itself was cancelled
                    raise
        await self._smtp.close()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                while await self.send_due() == self._batch_size and not self._stopping:  # more may be due
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
            # Checked once a poll: a session is closed between idle_seconds and that plus a poll.
            async with self._one_pass:
                await self._smtp.close_if_idle()

    async def send_due(self) -> int:
        """Claim up to ``batch_size`` due mails, send them over the kept SMTP session, settle
        them; returns how many were claimed."""
        async with self._one_pass:
            await self._pay_debts()
            started = time.monotonic()
            settlement = Settlement(token=uuid4())
            mails = await self._queue.claim(token=settlement.token, limit=self._batch_size, lease=self._lease)
            if not mails:
                return 0
            try:
                await self._send_all(mails, settlement, stop_after=started + self._lease.total_seconds() / 3)
            finally:
                self._owed.append(settlement)
                try:
                    await self._pay_debts()
                finally:
                    self._observe(settlement, time.monotonic() - started)
            return len(mails)

    async def _pay_debts(self) -> None:
        """Settle what earlier passes could not (the database was away); a settlement is kept
        until the database takes it, so a mail sent once is marked SENT, not sent again."""
        while self._owed:
            await self._queue.settle(self._owed[0])
            self._owed.pop(0)

    async def _send_all(
        self, mails: list[OutgoingMail], settlement: Settlement, *, stop_after: float
    ) -> None:
        position = 0
        try:
            for position, mail in enumerate(mails):
                # Stopping, or the rest would risk outliving the lease: they are due again now.
                if self._stopping or time.monotonic() > stop_after:
                    settlement.released.extend(m.id for m in mails[position:])
                    return
                try:
                    await self._send_one(mail)
                except _Unreachable as exc:  # one try for the whole batch, not one per mail
                    if len(mails) - position > 1:
                        log.warning("mail sender: %s; %d more mails wait", exc, len(mails) - position - 1)
                    reason = exc.__cause__ or exc
                    settlement.failed.extend(self._failure(m, reason) for m in mails[position:])
                    return
                except _SMTP_ERRORS as exc:
                    settlement.failed.append(self._failure(mail, exc))
                else:
                    settlement.sent.append(mail.id)
        except asyncio.CancelledError:
            # Stopping: the mails not yet started are due again at once (for a replica, or this
            # service once restarted); the one being sent keeps its lease, its outcome unknown.
            settlement.released.extend(m.id for m in mails[position + 1 :])
            raise

    async def _send_one(self, mail: OutgoingMail) -> None:
        """The span joins the trace of the event that asked for the mail (the order's trace)."""
        order = correlation.order_id.set(str(mail.order_id))
        try:
            with _tracer.start_as_current_span(
                "send email",
                context=tracing.context_from_carrier(mail.trace_headers),
                kind=trace.SpanKind.CLIENT,
                attributes={
                    "network.protocol.name": "smtp",
                    "server.address": self._host,
                    "server.port": self._port,
                    "emporium.notification.id": str(mail.id),
                },
            ) as span:
                try:
                    message = self._writer.write(
                        id=mail.id, to=mail.email_to, subject=mail.subject, body=mail.body
                    )
                    await self._smtp.send(self._writer.envelope_from, mail.email_to, message)
                except (_Unreachable, *_SMTP_ERRORS) as exc:
                    span.set_status(trace.Status(trace.StatusCode.ERROR, "not delivered; retried later"))
                    # Logged in the order's trace, with its order id.
                    reason = exc.__cause__ if isinstance(exc, _Unreachable) else exc
                    log.warning(
                        "mail to %s failed (attempt %d): %r", mail.email_to, mail.attempts + 1, reason
                    )
                    raise
        finally:
            correlation.order_id.reset(order)

    @staticmethod
    def _failure(mail: OutgoingMail, exc: BaseException) -> MailFailure:
        attempts = mail.attempts + 1
        return MailFailure(
            id=mail.id,
            attempts=attempts,
            status="FAILED" if attempts >= MAX_ATTEMPTS else "PENDING",
            error=repr(exc)[:500],
            retry_in=min(2**attempts, 300),
        )

    def _observe(self, settlement: Settlement, seconds: float) -> None:
        """Once per batch."""
        self._metrics.mails.labels("sent").inc(len(settlement.sent))
        self._metrics.mails.labels("failed").inc(len(settlement.failed))
        self._metrics.mails.labels("released").inc(len(settlement.released))
        self._metrics.batch_seconds.observe(seconds)


class _Session:
    """The sender's SMTP session, opened on first use and kept across batches until the sender
    finds it idle for ``idle_seconds`` (or stops). A session the server drops (a restart, a limit
    of messages per session, ``421``, its own idle timeout while this one was kept) is opened
    again, once per mail, and the mail sent on the new one; one it has already seen closed is
    simply replaced. An answer that does not come in time, or a stop in the middle of a
    command, leaves the session in doubt: it is cut without QUIT and the next mail opens
    another."""

    def __init__(self, host: str, port: int, *, idle_seconds: float, on_open: Callable[[], None]) -> None:
        self._host, self._port, self._idle, self._on_open = host, port, idle_seconds, on_open
        self._smtp: aiosmtplib.SMTP | None = None
        self._last_used = 0.0
        # Unless given one, aiosmtplib looks up the client's own name (socket.getfqdn, in a
        # thread) on every connect: the ThreadPoolExecutor.submit of issue 11. The name does not
        # change while the process runs. The server's name is still resolved per connect (its
        # address may change when it restarts); with sessions kept, connects are rare.
        self._local_hostname: str | None = None

    async def send(self, sender: str, recipient: str, message: bytes) -> None:
        if self._smtp is not None and not self._smtp.is_connected:
            self._smtp = None  # the server closed it while it was kept
        options = () if recipient.isascii() else ("SMTPUTF8",)
        dropped: Exception | None = None
        try:
            for _ in range(2):
                smtp = self._smtp or await self._open()
                try:
                    await smtp.sendmail(sender, [recipient], message, mail_options=options)
                    return
                except aiosmtplib.SMTPResponseException as exc:
                    if exc.code != 421:
                        raise  # this mail refused; aiosmtplib reset the envelope, the session goes on
                    dropped = exc
                except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPNotSupported):
                    raise  # this mail refused, as above
                except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
                    dropped = exc
                except (aiosmtplib.SMTPException, OSError):
                    self.abort()  # no answer in time: the session is in doubt
                    raise
                finally:
                    self._last_used = time.monotonic()
                await self.close()
        except asyncio.CancelledError:
            self.abort()  # stopped in the middle of a command: in doubt too
            raise
        assert dropped is not None
        raise dropped

    async def _open(self) -> aiosmtplib.SMTP:
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        smtp = aiosmtplib.SMTP(
            hostname=self._host, port=self._port, timeout=SMTP_TIMEOUT, local_hostname=self._local_hostname
        )
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _Unreachable(f"{self._host}:{self._port} took no connection") from exc
        self._on_open()
        self._smtp = smtp
        return smtp

    async def close_if_idle(self) -> None:
        if self._smtp is not None and time.monotonic() - self._last_used >= self._idle:
            await self.close()

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None or not smtp.is_connected:
            return
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()
        except asyncio.CancelledError:  # stopped while the idle session was being closed
            smtp.close()
            raise

    def abort(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()
