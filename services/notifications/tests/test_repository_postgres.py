"""The repository's raw statements against real PostgreSQL: what is written reads back exactly,
column by column, and a settle touches only the mails that still carry its claim's token."""

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import sqlalchemy as sa

from notifications.adapters.orm import notifications as n
from notifications.adapters.repository import MailFailure, MailQueue, OutgoingMail, Settlement
from notifications.domain import model
from notifications.service_layer.unit_of_work import NotificationsUnitOfWork

CARRIER = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "a=b"}


def note(*, email: str | None = "ada@example.com", order_id: UUID | None = None) -> model.Notification:
    return model.order_cancelled(
        id=uuid4(),
        customer_id=uuid4(),
        order_id=order_id or uuid4(),
        email=email,
        reason='Zoë\'s cart: "quoted", {braces}, back\\slash, ✓',
    )


async def add(sessions, notes: list[tuple[model.Notification, dict[str, str]]]) -> int:
    uow = NotificationsUnitOfWork(sessions, producer_name="notifications")
    async with uow:
        added = await uow.notifications.add_many(notes)
        await uow.commit()
    return added


async def rows(sessions) -> dict[UUID, dict]:
    async with sessions() as s:
        return {row["id"]: dict(row) for row in (await s.execute(sa.select(n))).mappings()}


async def test_a_recorded_notification_reads_back_exactly_as_written(sessions):
    mailed, unmailed = note(), note(email=None)
    before = datetime.now(UTC)
    assert await add(sessions, [(mailed, CARRIER), (unmailed, {})]) == 2
    after = datetime.now(UTC)
    read = await rows(sessions)
    for written, status, carrier in ((mailed, "PENDING", CARRIER), (unmailed, "SKIPPED", {})):
        row = read[written.id]
        created, due = row.pop("created_at"), row.pop("next_attempt_at")
        assert row == {
            "id": written.id,
            "customer_id": written.customer_id,
            "order_id": written.order_id,
            "type": "order_cancelled",
            "subject": written.subject,
            "body": written.body,
            "email_to": written.email_to,
            "email_status": status,
            "email_attempts": 0,
            "email_error": None,
            "sent_at": None,
            "trace_headers": carrier,
            "claim_token": None,
        }
        assert all(isinstance(v, UUID) for v in (row["id"], row["customer_id"], row["order_id"]))
        assert created.utcoffset() is not None and before - timedelta(seconds=1) <= created <= after
        assert due == created  # both the transaction's now()


async def test_an_orders_second_notification_of_a_type_is_left_out_and_not_counted(sessions):
    first = note()
    again = note(order_id=first.order_id)
    assert await add(sessions, [(first, CARRIER), (again, CARRIER)]) == 1  # the first one wins
    assert await add(sessions, [(note(order_id=first.order_id), CARRIER), (note(), CARRIER)]) == 1
    assert await add(sessions, []) == 0
    read = await rows(sessions)
    assert len(read) == 2 and first.id in read and again.id not in read


async def test_a_claimed_mail_reads_back_exactly_as_written_and_is_held_for_the_lease(sessions):
    written = note()
    await add(sessions, [(written, CARRIER)])
    token, queue = uuid4(), MailQueue(lambda: sessions)
    [mail] = await queue.claim(token=token, limit=10, lease=timedelta(seconds=90))
    assert mail == OutgoingMail(
        id=written.id,
        order_id=written.order_id,
        email_to="ada@example.com",
        subject=written.subject,
        body=written.body,
        attempts=0,
        trace_headers=CARRIER,
    )
    assert isinstance(mail.id, UUID) and isinstance(mail.order_id, UUID)
    row = (await rows(sessions))[written.id]
    assert row["claim_token"] == token and row["email_status"] == "PENDING"
    held_for = row["next_attempt_at"] - row["created_at"]
    assert row["next_attempt_at"].utcoffset() is not None
    assert timedelta(seconds=89) < held_for < timedelta(seconds=120)
    assert await queue.claim(token=uuid4(), limit=10, lease=timedelta(seconds=90)) == []  # held


async def test_a_claim_takes_the_longest_waiting_first_up_to_its_limit(sessions):
    notes = [note() for _ in range(3)]
    await add(sessions, [(x, CARRIER) for x in notes])
    async with sessions() as s, s.begin():  # the last waited longest, the first least
        for age, x in enumerate(notes):
            await s.execute(
                sa.update(n)
                .where(n.c.id == x.id)
                .values(next_attempt_at=sa.func.now() - timedelta(minutes=age + 1))
            )
    queue = MailQueue(lambda: sessions)
    claimed = await queue.claim(token=uuid4(), limit=2, lease=timedelta(seconds=90))
    assert {m.id for m in claimed} == {notes[2].id, notes[1].id}
    assert [m.id for m in await queue.claim(token=uuid4(), limit=2, lease=timedelta(seconds=90))] == [
        notes[0].id
    ]


async def test_a_settle_writes_each_outcome_and_touches_only_mails_that_still_carry_its_token(sessions):
    notes = [note() for _ in range(4)]
    await add(sessions, [(x, CARRIER) for x in notes])
    queue, token = MailQueue(lambda: sessions), uuid4()
    assert len(await queue.claim(token=token, limit=10, lease=timedelta(seconds=90))) == 4
    sent, failed, given_up, released = (x.id for x in notes)
    settlement = Settlement(
        token=token,
        sent=[sent],
        failed=[
            MailFailure(id=failed, attempts=1, status="PENDING", error="421 try later ✓", retry_in=30),
            MailFailure(id=given_up, attempts=8, status="FAILED", error="550 no such user", retry_in=0),
        ],
        released=[released],
    )
    await queue.settle(Settlement(token=uuid4(), sent=[sent], released=[released]))  # not its token
    assert {r["claim_token"] for r in (await rows(sessions)).values()} == {token}
    await queue.settle(settlement)
    await queue.settle(settlement)  # again: changes nothing
    read = await rows(sessions)
    assert all(r["claim_token"] is None for r in read.values())

    def state(id: UUID) -> tuple:
        r = read[id]
        return r["email_status"], r["email_attempts"], r["email_error"], r["sent_at"] is not None

    assert state(sent) == ("SENT", 1, None, True)
    assert read[sent]["sent_at"].utcoffset() is not None
    assert state(failed) == ("PENDING", 1, "421 try later ✓", False)
    assert state(given_up) == ("FAILED", 8, "550 no such user", False)
    assert state(released) == ("PENDING", 0, None, False)
    async with sessions() as s:
        now = (await s.execute(sa.select(sa.func.now()))).scalar_one()
    assert timedelta(seconds=25) < read[failed]["next_attempt_at"] - now <= timedelta(seconds=30)
    assert read[released]["next_attempt_at"] <= now
    assert [m.id for m in await queue.claim(token=uuid4(), limit=10, lease=timedelta(seconds=9))] == [
        released
    ]
