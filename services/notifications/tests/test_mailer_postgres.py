"""The SMTP sender against real PostgreSQL and a real SMTP server (the devstack's sink)."""

import asyncio
from uuid import uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from emporium_devstack.ports import free_port
from emporium_devstack.smtp import SmtpSink
from emporium_kit.db import make_session_factory
from emporium_kit.migrations import folder, upgrade
from notifications.adapters.mailer import SmtpSender
from notifications.adapters.orm import notifications as n

MIGRATIONS = folder("notifications")


@pytest.fixture
async def sessions(databases):
    url = databases.create("notifications")
    await asyncio.to_thread(upgrade, url, MIGRATIONS)
    engine = create_async_engine(url)
    yield make_session_factory(engine)
    await engine.dispose()


async def pending(sessions, count: int) -> None:
    async with sessions() as s, s.begin():
        await s.execute(
            sa.insert(n),
            [
                {
                    "id": uuid4(),
                    "customer_id": uuid4(),
                    "order_id": uuid4(),
                    "type": "ORDER_CONFIRMED",
                    "subject": f"Order {i} confirmed",
                    "body": "Thank you.",
                    "email_to": f"c{i}@example.com",
                    "email_status": "PENDING",
                }
                for i in range(count)
            ],
        )


async def statuses(sessions) -> list[tuple[str, int]]:
    async with sessions() as s:
        return sorted(
            tuple(r) for r in (await s.execute(sa.select(n.c.email_status, n.c.email_attempts))).all()
        )


async def test_every_due_mail_is_sent_over_one_connection_and_marked_sent(sessions, tmp_path):
    await pending(sessions, 5)
    async with SmtpSink(maildir=tmp_path / "mail") as sink:
        sender = SmtpSender(
            host=sink.host, port=sink.port, sender="shop@example.com", sessions=lambda: sessions
        )
        assert await sender.send_due() == 5
        assert len(sink.messages()) == 5
        assert sink.connections == 1
    assert await statuses(sessions) == [("SENT", 1)] * 5


async def test_mail_that_cannot_be_delivered_stays_pending_with_its_attempt_counted(sessions):
    await pending(sessions, 2)
    sender = SmtpSender(
        host="127.0.0.1", port=free_port(), sender="shop@example.com", sessions=lambda: sessions
    )
    assert await sender.send_due() == 2
    assert await statuses(sessions) == [("PENDING", 1)] * 2
