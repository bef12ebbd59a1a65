"""The messaging tables' retention purge against the real PostgreSQL (and, for the inbox window's
rule, the real Kafka): what goes, what stays, in batches, and never waiting on the hot path."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from emporium_events import topics
from emporium_events.retention import MessagingRetention, RetentionMetrics
from emporium_events.tables import dead_letters, inbox, messaging_metadata, outbox
from emporium_kit.db import make_session_factory
from emporium_kit.runtime import ensure_topics
from emporium_kit.settings import ServiceSettings

OUTBOX_WINDOW = timedelta(hours=1)
INBOX_WINDOW = timedelta(days=15)


@dataclass
class Tables:
    engine: AsyncEngine
    url: str

    def retention(
        self,
        *,
        batch_size: int = 1000,
        registry: CollectorRegistry | None = None,
        rescan_every: timedelta = timedelta(hours=1),
    ) -> MessagingRetention:
        return MessagingRetention(
            make_session_factory(self.engine),
            metrics=RetentionMetrics.for_service("retentiontest", registry or CollectorRegistry()),
            outbox_window=OUTBOX_WINDOW,
            inbox_window=INBOX_WINDOW,
            batch_size=batch_size,
            rescan_every=rescan_every,
        )

    async def add_outbox(self, *, created: timedelta, sent: timedelta | None) -> int:
        """A row created `created` ago and sent `sent` ago (None: not yet sent); returns its id."""
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            return (
                await conn.execute(
                    sa.insert(outbox)
                    .values(
                        event_id=uuid4(),
                        topic="orders.events",
                        key=str(uuid4()),
                        event_type="orders.OrderPlaced",
                        envelope={"payload": {"card_token": "tok_test"}},
                        created_at=now - created,
                        sent_at=None if sent is None else now - sent,
                    )
                    .returning(outbox.c.id)
                )
            ).scalar_one()

    async def add_inbox(self, *, processed: timedelta, consumer: str = "payments") -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.insert(inbox).values(
                    consumer=consumer,
                    event_id=uuid4(),
                    event_type="orders.OrderPlaced",
                    processed_at=datetime.now(UTC) - processed,
                )
            )

    async def add_dead_letter(self, *, created: timedelta, replayed: timedelta | None) -> int:
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            return (
                await conn.execute(
                    sa.insert(dead_letters)
                    .values(
                        consumer="payments",
                        topic="orders.events",
                        partition=0,
                        offset=1,
                        error_type="ValueError",
                        error="boom",
                        attempts=3,
                        created_at=now - created,
                        replayed_at=None if replayed is None else now - replayed,
                    )
                    .returning(dead_letters.c.id)
                )
            ).scalar_one()

    async def outbox_ids(self) -> set[int]:
        async with self.engine.connect() as conn:
            return set((await conn.execute(sa.select(outbox.c.id))).scalars())

    async def count(self, table: sa.Table) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()


@pytest.fixture
async def tables(databases) -> AsyncIterator[Tables]:
    url = databases.create("retention")
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(messaging_metadata.create_all)
    yield Tables(engine=engine, url=url)
    await engine.dispose()


async def test_sent_outbox_rows_older_than_the_window_are_purged_and_recent_ones_stay(tables):
    old = [
        await tables.add_outbox(created=timedelta(hours=h), sent=timedelta(hours=h)) for h in (2, 30, 24 * 40)
    ]
    recent = await tables.add_outbox(created=timedelta(minutes=30), sent=timedelta(minutes=30))

    assert await tables.retention().sweep() == len(old)

    assert await tables.outbox_ids() == {recent}


async def test_an_unsent_outbox_row_is_never_purged_whatever_its_age(tables):
    unsent = {
        await tables.add_outbox(created=timedelta(days=d), sent=None) for d in (0, 2, 400)
    }  # a year stuck: still an event not yet published

    assert await tables.retention().sweep() == 0

    assert await tables.outbox_ids() == unsent


async def test_inbox_rows_older_than_the_window_are_purged_and_recent_ones_stay(tables):
    for days in (16, 30):
        await tables.add_inbox(processed=timedelta(days=days))
    for days in (0, 14):
        await tables.add_inbox(processed=timedelta(days=days), consumer="inventory")

    assert await tables.retention().sweep() == 2

    async with tables.engine.connect() as conn:
        kept = (await conn.execute(sa.select(inbox.c.consumer))).scalars().all()
    assert kept == ["inventory", "inventory"]


async def test_a_dead_letter_goes_only_once_replayed_longer_ago_than_the_inbox_window(tables):
    waiting = await tables.add_dead_letter(created=timedelta(days=90), replayed=None)
    replayed_lately = await tables.add_dead_letter(created=timedelta(days=90), replayed=timedelta(days=1))
    await tables.add_dead_letter(created=timedelta(days=90), replayed=timedelta(days=16))

    assert await tables.retention().sweep() == 1

    async with tables.engine.connect() as conn:
        kept = set((await conn.execute(sa.select(dead_letters.c.id))).scalars())
    assert kept == {waiting, replayed_lately}


async def test_the_purge_deletes_in_batches_each_its_own_transaction_until_one_comes_back_short(tables):
    for _ in range(5):
        await tables.add_outbox(created=timedelta(hours=3), sent=timedelta(hours=2))
    statements = Statements(tables.engine)

    with statements:
        assert await tables.retention(batch_size=2).sweep() == 5

    # 2, 2, then 1 (short: done); the other tables' first batches come back empty.
    assert statements.deletes == ["outbox", "outbox", "outbox", "inbox", "dead_letters"]
    assert statements.commits == len(statements.deletes)
    assert await tables.count(outbox) == 0


async def test_a_row_another_transaction_holds_is_skipped_not_waited_on_and_goes_at_the_next_rescan(tables):
    held = await tables.add_outbox(created=timedelta(hours=3), sent=timedelta(hours=2))
    others = [await tables.add_outbox(created=timedelta(hours=3), sent=timedelta(hours=2)) for _ in range(3)]
    retention = tables.retention(batch_size=2)

    async with tables.engine.connect() as holder:
        async with holder.begin():
            await holder.execute(sa.select(outbox.c.id).where(outbox.c.id == held).with_for_update())
            # Without SKIP LOCKED the purge would wait here for as long as the holder's transaction.
            assert await asyncio.wait_for(retention.sweep(), timeout=5) == len(others)
            assert await tables.outbox_ids() == {held}

    # Sent before the newest row purged, so behind the table's floor: the sweeps that follow pass
    # it by, and the next one from the table's start (an hour later by default) takes it.
    assert await retention.sweep() == 0
    assert await tables.outbox_ids() == {held}
    assert await tables.retention(batch_size=2, rescan_every=timedelta(0)).sweep() == 1
    assert await tables.outbox_ids() == set()


async def test_a_row_the_relay_is_claiming_is_neither_waited_on_nor_purged(tables):
    # An old row published only now: the relay's claim marks it sent in a transaction that stays
    # open until Kafka acknowledged the batch.
    claimed = await tables.add_outbox(created=timedelta(days=3), sent=None)
    retention = tables.retention()

    async with tables.engine.connect() as relay:
        async with relay.begin():
            await relay.execute(
                sa.update(outbox).where(outbox.c.id == claimed).values(sent_at=sa.func.clock_timestamp())
            )
            assert await asyncio.wait_for(retention.sweep(), timeout=5) == 0

    assert await retention.sweep() == 0  # sent just now: within the window
    assert await tables.outbox_ids() == {claimed}


async def test_each_batch_starts_where_the_previous_one_ended_not_at_the_start_of_the_index(tables):
    # 30,000 rows purged and not vacuumed: their entries stay in the index, and a scan from its
    # start would step over all of them in every batch and every sweep.
    async with tables.engine.begin() as conn:
        await conn.execute(sa.text("ALTER TABLE inbox SET (autovacuum_enabled = off)"))
        await conn.execute(
            sa.text(
                "INSERT INTO inbox (consumer, event_id, event_type, processed_at)"
                " SELECT 'payments', gen_random_uuid(), 'orders.OrderPlaced',"
                " now() - interval '20 days' - g * interval '1 second' FROM generate_series(1, 30000) g"
            )
        )
    retention = tables.retention(batch_size=1000)
    assert await retention.sweep() == 30000
    await tables.add_inbox(processed=timedelta(days=16))  # due, and newer than every row purged

    async with tables.engine.connect() as conn:
        statement = retention.statements["inbox"].compile(conn.sync_connection)
        pages = {}
        for label, floor in (
            ("from the floor", datetime.now(UTC) - timedelta(days=20)),
            ("from the start", None),
        ):
            async with conn.begin():
                plan = (
                    await conn.exec_driver_sql(
                        f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {statement}",
                        {**statement.params, "floor": floor},
                    )
                ).scalars()
                pages[label] = _index_pages(list(plan), "inbox_processed_at")
                await conn.rollback()

    assert pages["from the floor"] <= 3, pages  # the index's root and one leaf
    assert pages["from the start"] > 50, pages
    assert await retention.sweep() == 1


async def test_two_replicas_sweeping_at_once_share_the_rows_and_purge_each_once(tables):
    async with tables.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO outbox (event_id, topic, key, event_type, envelope, created_at, sent_at)"
                " SELECT gen_random_uuid(), 'orders.events', 'k', 'orders.OrderPlaced', '{}',"
                " now() - interval '3 hours', now() - interval '2 hours' - g * interval '1 ms'"
                " FROM generate_series(1, 300) g"
            )
        )
    engines = [create_async_engine(tables.url) for _ in range(2)]
    try:
        replicas = [
            MessagingRetention(
                make_session_factory(engine),
                metrics=RetentionMetrics.for_service("retentiontest", CollectorRegistry()),
                outbox_window=OUTBOX_WINDOW,
                inbox_window=INBOX_WINDOW,
                batch_size=7,
            )
            for engine in engines
        ]
        purged = await asyncio.wait_for(asyncio.gather(*(r.sweep() for r in replicas)), timeout=30)
    finally:
        for engine in engines:
            await engine.dispose()

    assert sum(purged) == 300
    assert await tables.count(outbox) == 0


async def test_the_rows_purged_are_counted_per_table(tables):
    registry = CollectorRegistry()
    for _ in range(3):
        await tables.add_outbox(created=timedelta(hours=3), sent=timedelta(hours=2))
    await tables.add_inbox(processed=timedelta(days=20))

    await tables.retention(batch_size=2, registry=registry).sweep()

    def purged(table: str) -> float | None:
        return registry.get_sample_value(
            "emporium_retentiontest_messaging_rows_purged_total", {"table": table}
        )

    assert (purged("outbox"), purged("inbox"), purged("dead_letters")) == (3, 1, 0)


async def test_a_sweep_that_purged_rows_says_so_in_one_line_and_an_idle_one_says_nothing(tables, caplog):
    retention = tables.retention()
    await tables.add_outbox(created=timedelta(hours=3), sent=timedelta(hours=2))
    await tables.add_inbox(processed=timedelta(days=20))

    with caplog.at_level(logging.INFO, logger="emporium_events.retention"):
        await retention.sweep()
        await retention.sweep()

    (line,) = [r.getMessage() for r in caplog.records if r.name == "emporium_events.retention"]
    assert line.startswith(
        "retention purged 1 sent outbox rows older than 1 h, 1 inbox rows older than 360 h, "
        "0 replayed dead letters older than 360 h ("
    )


async def test_the_purge_finds_its_rows_by_index_and_deletes_them_by_tid_never_scanning_a_table(tables):
    # Enough rows that a scan would cost: 20,000 per table, a tenth of them or more due.
    async with tables.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO outbox (event_id, topic, key, event_type, envelope, created_at, sent_at)"
                " SELECT gen_random_uuid(), 'orders.events', 'k', 'orders.OrderPlaced', '{}', t, t"
                " FROM (SELECT now() - g * interval '18 seconds' AS t FROM generate_series(1, 20000) g) s"
            )
        )
        await conn.execute(
            sa.text(
                "INSERT INTO inbox (consumer, event_id, event_type, processed_at)"
                " SELECT 'payments', gen_random_uuid(), 'orders.OrderPlaced', now() - g * interval '2 minutes'"
                " FROM generate_series(1, 20000) g"
            )
        )
        await conn.execute(
            sa.text(
                'INSERT INTO dead_letters (consumer, topic, partition, "offset", error_type, error, attempts,'
                " replayed_at) SELECT 'payments', 'orders.events', 0, g, 'E', 'e', 3,"
                " CASE WHEN g % 10 = 0 THEN now() - interval '20 days' END FROM generate_series(1, 20000) g"
            )
        )
        for table in ("outbox", "inbox", "dead_letters"):
            await conn.execute(sa.text(f"ANALYZE {table}"))

    plans = {}
    async with tables.engine.connect() as conn:
        for table, statement in tables.retention().statements.items():
            compiled = statement.compile(conn.sync_connection)
            plans[table] = "\n".join(
                (await conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)).scalars()
            )

    for table, index in (
        ("outbox", "outbox_sent_at"),
        ("inbox", "inbox_processed_at"),
        ("dead_letters", "dead_letters_replayed_at"),
    ):
        assert re.search(rf"Index Scan (using|on) {index} ", plans[table]), plans[table]
        assert f"Tid Scan on {table}" in plans[table], plans[table]
        assert "Seq Scan" not in plans[table], plans[table]


async def test_the_default_inbox_window_outlives_every_record_on_the_topics_the_services_create(
    kafka_bootstrap,
):
    # A group that lost its offsets rereads a topic from its earliest record, which Kafka keeps
    # until the whole segment holding it is older than retention.ms: up to retention.ms + segment.ms.
    await ensure_topics(kafka_bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics.ALL]
        )
    finally:
        await admin.close()
    lifetimes = {}
    for response in responses:
        for _, _, _, topic, entries in response.resources:
            configs = {entry[0]: entry[1] for entry in entries}
            lifetimes[topic] = int(configs["retention.ms"]) + int(configs["segment.ms"])
    assert set(lifetimes) == set(topics.ALL)

    inbox_window = timedelta(hours=ServiceSettings().inbox_retention_hours)
    assert all(inbox_window > timedelta(milliseconds=ms) for ms in lifetimes.values()), lifetimes


class Statements:
    """Counts the purge's DELETEs (by table) and the commits on an engine, inside ``with``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.sync_engine
        self.deletes: list[str] = []
        self.commits = 0

    def __enter__(self) -> Statements:
        sa.event.listen(self._engine, "after_cursor_execute", self._executed)
        sa.event.listen(self._engine, "commit", self._committed)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self._engine, "after_cursor_execute", self._executed)
        sa.event.remove(self._engine, "commit", self._committed)

    def _executed(self, conn, cursor, statement: str, *args: object) -> None:
        if "DELETE FROM " in statement:
            self.deletes.append(statement.split("DELETE FROM ", 1)[1].split()[0])

    def _committed(self, conn) -> None:
        self.commits += 1


def _index_pages(plan: list[str], index: str) -> int:
    """Buffers the plan's scan of `index` touched (its node's Buffers line)."""
    node = next(i for i, p in enumerate(plan) if re.search(rf"Index Scan (using|on) {index} ", p))
    buffers = next(p for p in plan[node + 1 :] if "Buffers:" in p)
    return sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", buffers))
