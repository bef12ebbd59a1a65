"""The SMTP sender against real PostgreSQL and a real SMTP server (the devstack's sink)."""

import asyncio
from datetime import timedelta
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from emporium_devstack.ports import free_port
from emporium_devstack.smtp import SmtpSink
from notifications.adapters.mailer import MailMetrics, SmtpSender
from notifications.adapters.orm import notifications as n
from notifications.adapters.repository import MailQueue


class DroppingSink(SmtpSink):
    """A sink that cuts the connection when the ``drop_at``-th message has been sent to it,
    before storing it or answering; ``then_refuse`` also stops it taking connections."""

    def __init__(self, *, drop_at: int, then_refuse: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self._drop_at, self._then_refuse, self._offered = drop_at, then_refuse, 0

    def _store(self, mail_from, rcpt_to, body):
        self._offered += 1
        if self._offered == self._drop_at:
            if self._then_refuse and self._server is not None:
                self._server.close()
            raise ConnectionResetError("the sink drops the session")
        return super()._store(mail_from, rcpt_to, body)


class StallingSink(SmtpSink):
    """A sink that never finishes reading the ``stall_at``-th message."""

    def __init__(self, *, stall_at: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self._stall_at, self._offered = stall_at, 0
        self.stalled = asyncio.Event()

    async def _read_data(self, reader):
        self._offered += 1
        if self._offered == self._stall_at:
            self.stalled.set()
            await asyncio.Event().wait()
        return await super()._read_data(reader)


class WatchedSink(SmtpSink):
    """A sink that counts the sessions that have ended (the client quit or hung up)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ended = 0

    async def _handle(self, reader, writer):
        try:
            await super()._handle(reader, writer)
        finally:
            self.ended += 1


class IdleTimeoutSink(SmtpSink):
    """A sink that ends a session left idle ``idle`` seconds with ``421``, as mail servers do:
    at once (``at_once``), or only when the client next speaks, so that the client learns it
    from the answer to its next command."""

    def __init__(self, *, idle: float, at_once: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self._idle, self._at_once = idle, at_once

    async def _session(self, reader, writer):
        await super()._session(_Expiring(reader, writer, self._idle, self._at_once), writer)


class _Expiring:
    def __init__(self, reader, writer, idle: float, at_once: bool) -> None:
        self._reader, self._writer, self._idle, self._at_once = reader, writer, idle, at_once

    async def readuntil(self, separator=b"\n"):
        try:
            return await asyncio.wait_for(self._reader.readuntil(separator), self._idle)
        except TimeoutError:
            if not self._at_once:
                await self._reader.readuntil(separator)  # the next command, refused below
            self._writer.write(b"421 4.4.2 idle too long, closing\r\n")
            await self._writer.drain()
            raise asyncio.IncompleteReadError(b"", None) from None

    def __getattr__(self, name):
        return getattr(self._reader, name)


async def pending(sessions, count: int, *, first: int = 0) -> None:
    async with sessions() as s, s.begin():
        await s.execute(
            sa.insert(n),
            [
                {
                    "id": uuid4(),
                    "customer_id": uuid4(),
                    "order_id": uuid4(),
                    "type": "order_confirmed",
                    "subject": f"Order {i} confirmed",
                    "body": "Thank you.",
                    "email_to": f"c{i}@example.com",
                    "email_status": "PENDING",
                }
                for i in range(first, first + count)
            ],
        )


async def one_pending(sessions, *, email_to: str, subject: str, body: str) -> UUID:
    id = uuid4()
    async with sessions() as s, s.begin():
        await s.execute(
            sa.insert(n).values(
                id=id,
                customer_id=uuid4(),
                order_id=uuid4(),
                type="order_confirmed",
                subject=subject,
                body=body,
                email_to=email_to,
                email_status="PENDING",
            )
        )
    return id


async def statuses(sessions) -> list[tuple[str, int]]:
    async with sessions() as s:
        return sorted(
            tuple(r) for r in (await s.execute(sa.select(n.c.email_status, n.c.email_attempts))).all()
        )


async def time_passes(sessions) -> None:
    """Every pending mail's backoff ends now."""
    async with sessions() as s, s.begin():
        await s.execute(
            sa.update(n).where(n.c.email_status == "PENDING").values(next_attempt_at=sa.func.now())
        )


async def until(condition, timeout: float = 5.0) -> None:
    """Waits for what a sink counts (it has no event to wait on)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if condition():
            return
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def subjects(*sinks: SmtpSink) -> list[str]:
    return [message_from_bytes(p.read_bytes())["Subject"] for sink in sinks for p in sink.messages()]


def sender_for(sessions, sink_or_port, **kwargs) -> SmtpSender:
    port = sink_or_port if isinstance(sink_or_port, int) else sink_or_port.port
    return SmtpSender(
        host="127.0.0.1", port=port, sender="shop@example.com", sessions=lambda: sessions, **kwargs
    )


async def test_twenty_mails_go_out_over_one_smtp_session_and_are_marked_sent_by_one_statement(
    sessions, round_trips, tmp_path
):
    await pending(sessions, 20)
    counted = round_trips()
    async with SmtpSink(maildir=tmp_path / "mail") as sink:
        assert await sender_for(sessions, sink).send_due() == 20
        assert (sink.received, sink.connections) == (20, 1)
    # One claim, one mark, each in autocommit: no BEGIN, no COMMIT.
    assert (counted.statements, counted.total) == (["WITH", "UPDATE"], 2)
    assert await statuses(sessions) == [("SENT", 1)] * 20


async def test_mail_that_cannot_be_delivered_stays_pending_with_its_attempt_counted(sessions):
    await pending(sessions, 2)
    assert await sender_for(sessions, free_port()).send_due() == 2
    assert await statuses(sessions) == [("PENDING", 1)] * 2


async def test_two_senders_racing_never_send_one_mail_twice(sessions, tmp_path):
    await pending(sessions, 60)
    async with SmtpSink(maildir=tmp_path / "mail") as sink:
        racers = [sender_for(sessions, sink, batch_size=7) for _ in range(2)]

        async def drain(sender: SmtpSender) -> int:
            sent = 0
            while claimed := await sender.send_due():
                sent += claimed
            return sent

        shares = await asyncio.gather(*(drain(s) for s in racers))
        assert sum(shares) == 60 and all(shares)
        assert sorted(subjects(sink)) == sorted(f"Order {i} confirmed" for i in range(60))
    assert await statuses(sessions) == [("SENT", 1)] * 60


async def test_a_session_the_server_drops_mid_batch_is_opened_again_and_the_batch_goes_on(sessions, tmp_path):
    await pending(sessions, 20)
    async with DroppingSink(maildir=tmp_path / "mail", drop_at=8) as sink:
        assert await sender_for(sessions, sink).send_due() == 20
        assert (sink.received, sink.connections) == (20, 2)
        assert len(set(subjects(sink))) == 20
    assert await statuses(sessions) == [("SENT", 1)] * 20


async def test_a_server_that_goes_away_mid_batch_leaves_the_unsent_mails_pending_and_they_go_out_later(
    sessions, tmp_path
):
    await pending(sessions, 20)
    async with DroppingSink(maildir=tmp_path / "before", drop_at=8, then_refuse=True) as first:
        sender = sender_for(sessions, first)
        assert await sender.send_due() == 20
        assert first.received == 7
    assert await statuses(sessions) == [("PENDING", 1)] * 13 + [("SENT", 1)] * 7
    assert await sender.send_due() == 0  # backing off
    await time_passes(sessions)
    async with SmtpSink(maildir=tmp_path / "after", port=first.port) as back:
        assert await sender.send_due() == 13
        assert back.connections == 1
        assert sorted(subjects(first, back)) == sorted(f"Order {i} confirmed" for i in range(20))
    assert await statuses(sessions) == [("SENT", 1)] * 7 + [("SENT", 2)] * 13


async def test_mail_claimed_by_a_sender_that_died_is_sent_by_another_once_the_lease_ends(sessions, tmp_path):
    await pending(sessions, 5)
    # A sender claims the mail and dies before sending any of it.
    await MailQueue(lambda: sessions).claim(token=uuid4(), limit=50, lease=timedelta(seconds=1))
    async with SmtpSink(maildir=tmp_path / "mail") as sink:
        survivor = sender_for(sessions, sink)
        assert await survivor.send_due() == 0  # still held
        await asyncio.sleep(1.1)
        assert await survivor.send_due() == 5
        assert sink.received == 5
    assert await statuses(sessions) == [("SENT", 1)] * 5


async def test_mail_sent_while_the_database_refused_its_mark_is_marked_on_the_next_pass_not_sent_again(
    sessions, tmp_path, monkeypatch
):
    await pending(sessions, 3)
    settle, refusals = (
        MailQueue.settle,
        [sa.exc.OperationalError("UPDATE", {}, Exception("the database is away"))],
    )

    async def flaky(self, settlement):
        if refusals:
            raise refusals.pop()
        await settle(self, settlement)

    monkeypatch.setattr(MailQueue, "settle", flaky)
    async with SmtpSink(maildir=tmp_path / "mail") as sink:
        sender = sender_for(sessions, sink)
        try:
            await sender.send_due()
        except sa.exc.OperationalError:
            pass
        else:
            raise AssertionError("the refusal was swallowed")
        assert await sender.send_due() == 0  # pays what it owed first; nothing else is due
        assert sink.received == 3
    assert await statuses(sessions) == [("SENT", 1)] * 3


async def test_a_sender_stopped_mid_batch_hands_back_at_once_the_mails_it_had_not_started(sessions, tmp_path):
    await pending(sessions, 10)
    async with StallingSink(maildir=tmp_path / "mail", stall_at=4) as sink:
        sender = sender_for(sessions, sink)
        await sender.start()
        await asyncio.wait_for(sink.stalled.wait(), timeout=10)
        await asyncio.sleep(0.2)  # the sender now waits for the answer to the fourth message
        await asyncio.wait_for(sender.stop(), timeout=3)
        assert sink.received == 3
    async with sessions() as s:
        rows = (
            await s.execute(
                sa.select(
                    n.c.email_status,
                    (n.c.next_attempt_at <= sa.func.now()).label("due"),
                    n.c.claim_token.is_not(None).label("held"),
                )
            )
        ).all()
    states = sorted((status, due, held) for status, due, held in rows)
    # Three sent, the fourth (its outcome unknown) held until its lease ends, six due again now.
    assert (
        states == [("PENDING", False, True)] + [("PENDING", True, False)] * 6 + [("SENT", False, False)] * 3
    )


async def test_two_batches_in_a_row_go_out_over_one_smtp_session_which_stop_closes(sessions, tmp_path):
    metrics = MailMetrics.for_registry(CollectorRegistry())
    async with WatchedSink(maildir=tmp_path / "mail") as sink:
        sender = sender_for(sessions, sink, metrics=metrics)
        await pending(sessions, 2)
        assert await sender.send_due() == 2
        await pending(sessions, 1, first=2)
        assert await sender.send_due() == 1
        assert (sink.received, sink.connections, metrics.sessions._value.get()) == (3, 1, 1)
        assert sink.ended == 0
        await sender.stop()
        await until(lambda: sink.ended == 1)
    assert await statuses(sessions) == [("SENT", 1)] * 3


async def test_a_kept_session_is_closed_once_idle_and_the_next_mail_opens_another(sessions, tmp_path):
    async with WatchedSink(maildir=tmp_path / "mail") as sink:
        sender = sender_for(sessions, sink, poll_seconds=0.05, idle_seconds=1.0)
        await sender.start()
        try:
            await pending(sessions, 1)
            sender.notify()
            await until(lambda: sink.received == 1)
            await asyncio.sleep(0.2)
            assert sink.ended == 0  # kept while not yet idle long enough
            await until(lambda: sink.ended == 1)
            await pending(sessions, 1, first=1)
            sender.notify()
            await until(lambda: sink.received == 2)
            assert sink.connections == 2
        finally:
            await sender.stop()
    assert await statuses(sessions) == [("SENT", 1)] * 2


@pytest.mark.parametrize("at_once", [True, False], ids=["closed-at-once", "refuses-the-next-command"])
async def test_a_session_the_server_closed_while_idle_is_opened_again_and_the_mail_goes_out_once(
    sessions, tmp_path, at_once
):
    async with IdleTimeoutSink(maildir=tmp_path / "mail", idle=0.5, at_once=at_once) as sink:
        sender = sender_for(sessions, sink)
        await pending(sessions, 1)
        assert await sender.send_due() == 1
        await asyncio.sleep(1.0)  # the server's idle timeout passes; the sender's (5 s) does not
        await pending(sessions, 1, first=1)
        assert await sender.send_due() == 1
        assert (sink.received, sink.connections) == (2, 2)
        assert sorted(subjects(sink)) == ["Order 0 confirmed", "Order 1 confirmed"]
        await sender.stop()
    assert await statuses(sessions) == [("SENT", 1)] * 2


async def test_a_mail_has_its_headers_with_a_non_ascii_subject_encoded_and_no_line_break_adds_a_header(
    sessions, tmp_path
):
    subject = "Ihre Bestellung ist bestätigt ✓ – merci, Zoë"
    sent = await one_pending(sessions, email_to="ada@example.com", subject=subject, body="Grüße,\nEmporium")
    await one_pending(
        sessions, email_to="eve@example.com\r\nBcc: mallory@example.com", subject="Hi", body="x"
    )
    await one_pending(
        sessions, email_to="eve@example.com", subject="Hi\r\nBcc: mallory@example.com", body="x"
    )
    await one_pending(sessions, email_to="eve@example.com", subject="Hi\nBcc: mallory@example.com", body="x")
    async with SmtpSink(maildir=tmp_path / "mail") as sink:
        sender = SmtpSender(
            host="127.0.0.1",
            port=sink.port,
            sender="Boutique Émile <shop@example.com>",
            sessions=lambda: sessions,
        )
        assert await sender.send_due() == 4
        await sender.stop()
        [path] = sink.messages()
    raw = path.read_bytes()
    envelope, _, text = raw.partition(b"X-Sink-Rcpt-To: <ada@example.com>\r\n")
    assert envelope == b"X-Sink-Mail-From: <shop@example.com>\r\n"
    head = text.partition(b"\r\n\r\n")[0]
    assert head.isascii() and b"=?utf-8?" in head and b"mallory" not in raw
    mail = message_from_bytes(text, policy=policy.default)
    assert mail.keys() == [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
    ]
    assert (mail["From"].addresses[0].display_name, mail["From"].addresses[0].addr_spec) == (
        "Boutique Émile",
        "shop@example.com",
    )
    assert (str(mail["To"]), str(mail["Subject"])) == ("ada@example.com", subject)
    assert parsedate_to_datetime(mail["Date"]).utcoffset() == timedelta(0)
    assert mail["Message-ID"] == f"<{sent}@example.com>"  # the same on a resend
    assert (mail["MIME-Version"], mail.get_content_type(), mail.get_content_charset()) == (
        "1.0",
        "text/plain",
        "utf-8",
    )
    assert mail.get_content().replace("\r\n", "\n") == "Grüße,\nEmporium\n"
    assert not mail.defects and all(not mail[name].defects for name in mail.keys())
    # The three with a line break in a header value: refused, counted as a failed attempt.
    assert await statuses(sessions) == [("PENDING", 1)] * 3 + [("SENT", 1)]
