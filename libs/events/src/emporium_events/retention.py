"""Retention of the messaging tables: what the outbox, the inbox and the dead letters forget.

What goes, and when (windows from the service's settings, ``emporium_kit.settings``):

- **Outbox rows sent** more than the outbox window ago. Once Kafka has a row (``sent_at`` commits
  only after every send of its batch was acknowledged), nothing reads it again; keeping it only
  keeps a second copy of what the topic holds, payment tokens included (``OrderPlaced``). An
  unsent row is never purged, however old: it is an event not yet published.
- **Inbox rows processed** more than the inbox window ago. A row is what makes a redelivered event
  a no-op, so the window must outlast every way an event can come back: a consumer group whose
  offsets expired (or were reset) reads its topics from the earliest record Kafka still holds,
  which can be ``retention.ms + segment.ms`` old (Kafka deletes whole segments, and a segment
  is closed at the latest ``segment.ms`` after its first record): 7 + 7 days with the broker's
  defaults, which every topic here has. Hence 15 days by default; see the setting.
- **Dead letters replayed** more than the inbox window ago. A letter not yet replayed is never
  purged: it is work an operator still has to do. A replayed one is history, and past the inbox
  window it could not be safely replayed again anyway (the other consumers of its topic would no
  longer recognise it as a duplicate).

How, without touching the hot path. Each table is purged in batches of ``batch_size`` rows, each
batch one short transaction of one statement: the oldest rows past the window, found by an index
on the time column (tables.py; no table scan, and next to nothing to read when nothing is due),
locked ``FOR UPDATE SKIP LOCKED`` and deleted by ``ctid``; a sweep moves to the next table when a
batch comes back short. The rows it deletes are ones no relay and no consumer touches any more
(the relay claims unsent rows only, a consumer inserts new inbox rows), and a row someone else
does hold (another replica's sweep, an operator replaying a letter) is skipped, never waited on.
Each batch starts where the previous one ended (see ``_purge``: the dead entries a purge leaves
in the index until the next vacuum would otherwise be stepped over again by every batch).

Measured on 1 M outbox and 2 M inbox rows (PostgreSQL 15, fsync on, a shared 2-core host),
1,000-row batches: 1.3–7.9 ms a batch, 2–4 index pages when nothing is due. Without the indexes a
batch was a seq scan and sort of the table (250–650 ms, 77,000 pages, even with nothing due);
found by key instead of ``ctid``, 4–11 ms; a sweep of 1.5 M due rows took 30.6 s (49,000 rows/s)
with the floor and 50.7 s without it.

Who runs it. Every replica, on its own: two sweeps at once split the rows between them (each skips
what the other locked), so there is nothing to coordinate, and a replica without Kafka (its relay
standing by or cut off) still purges its database.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium_events.tables import dead_letters, inbox, outbox

log = logging.getLogger(__name__)

_CTID: sa.ColumnClause[Any] = sa.literal_column("ctid")


@dataclass(frozen=True)
class RetentionMetrics:
    purged: Counter

    @classmethod
    def for_service(cls, service: str, registry: CollectorRegistry = REGISTRY) -> RetentionMetrics:
        """One per service and registry, every table's series at 0 from the start."""
        key = (service, registry)
        if key not in _BUILT:
            purged = Counter(
                f"emporium_{service}_messaging_rows_purged",
                "Rows the retention purge deleted from a messaging table (outbox: sent rows, inbox, "
                "dead_letters: replayed letters), by table.",
                ["table"],
                registry=registry,
            )
            for table in _TABLES:
                purged.labels(table)
            _BUILT[key] = cls(purged=purged)
        return _BUILT[key]


_TABLES = (outbox.name, inbox.name, dead_letters.name)
_BUILT: dict[tuple[str, CollectorRegistry], RetentionMetrics] = {}


class MessagingRetention:
    """Purges sent outbox rows, inbox rows and replayed dead letters older than their windows
    (see the module's notes); ``sweep()`` is the periodic job. Each batch of a table starts where
    the previous one ended, and a sweep every ``rescan_every`` from the table's oldest row (see
    ``_purge``)."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        metrics: RetentionMetrics,
        outbox_window: timedelta,
        inbox_window: timedelta,
        batch_size: int = 1000,
        rescan_every: timedelta = timedelta(hours=1),
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._session_factory = session_factory
        self._metrics = metrics
        self._batch_size = batch_size
        self._windows = {  # as the log line says them
            table: f"{window.total_seconds() / 3600:g} h"
            for table, window in (
                (outbox.name, outbox_window),
                (inbox.name, inbox_window),
                (dead_letters.name, inbox_window),
            )
        }
        # Built once (building a statement costs more CPU than running it). The cut-off is the
        # database's clock, which wrote the timestamps, not this host's.
        self._purges = {
            outbox.name: _purge(outbox, outbox.c.sent_at, outbox_window, batch_size),
            inbox.name: _purge(inbox, inbox.c.processed_at, inbox_window, batch_size),
            dead_letters.name: _purge(dead_letters, dead_letters.c.replayed_at, inbox_window, batch_size),
        }
        self._floors: dict[str, datetime | None] = dict.fromkeys(self._purges)
        self._rescan_seconds = rescan_every.total_seconds()
        self._rescanned = time.monotonic()

    @property
    def statements(self) -> dict[str, sa.Select[int, datetime | None]]:
        """Each table's purge statement (one batch; ``floor`` bound to NULL), for an EXPLAIN."""
        return dict(self._purges)

    async def sweep(self) -> int:
        """Purge every table down to its window; returns how many rows went. Logs one line when
        it purged something."""
        started = time.monotonic()
        if started - self._rescanned >= self._rescan_seconds:
            self._floors = dict.fromkeys(self._purges)
            self._rescanned = started
        purged = {table: await self._purge_table(table) for table in self._purges}
        total = sum(purged.values())
        if total:
            log.info(
                "retention purged %d sent outbox rows older than %s, %d inbox rows older than %s, "
                "%d replayed dead letters older than %s (%.2f s)",
                purged[outbox.name],
                self._windows[outbox.name],
                purged[inbox.name],
                self._windows[inbox.name],
                purged[dead_letters.name],
                self._windows[dead_letters.name],
                time.monotonic() - started,
            )
        return total

    async def _purge_table(self, table: str) -> int:
        total = 0
        while True:
            async with self._session_factory() as session, session.begin():
                conn = await session.connection()
                row = (await conn.execute(self._purges[table], {"floor": self._floors[table]})).one()
            deleted: int = row[0]
            newest: datetime | None = row[1]
            total += deleted
            self._metrics.purged.labels(table).inc(deleted)
            if newest is not None:
                self._floors[table] = newest
            # Short: nothing more is due, or the rest is held by someone else (passed by: the
            # next sweep from the start takes it).
            if deleted < self._batch_size:
                return total


def _purge(
    table: sa.Table, column: sa.Column[datetime], window: timedelta, batch_size: int
) -> sa.Select[int, datetime | None]:
    """One batch: ``DELETE ... WHERE ctid = ANY(ARRAY(the oldest `batch_size` rows from
    :floor to the cut-off, SKIP LOCKED))``, answering how many went and the newest of them.

    ``ctid``: a row locked ``FOR UPDATE`` keeps it until this transaction ends (nobody else can
    update or delete it), so the delete finds each row by a TID scan, not a second index lookup
    by key; ``= ANY(ARRAY(...))`` keeps that plan whatever the statistics say (``ctid IN
    (subquery)`` became a hash join over a seq scan of a 20,000-row table). ``column < cut-off``
    is false for NULL (an unsent outbox row, a letter not replayed), which also lets the partial
    indexes serve it.

    The floor. Deleted index entries stay in the index until a vacuum removes them, and every
    scan from the index's start steps over all of them: on 500,000 inbox rows deleted and not
    yet vacuumed, a probe that found nothing read 1,370 index pages (16 ms), and a sweep of many
    batches reread its own earlier batches' entries each time. So each batch starts at the newest
    time the previous one deleted (``>=``: rows share a time, an inbox claim's rows its
    transaction's), and only a sweep now and then (``rescan_every``) starts from the beginning,
    for the few rows a floor passed by: ones locked when their turn came, or committed by a
    transaction older than the window."""
    floor = sa.bindparam("floor", None, type_=sa.DateTime(timezone=True))
    due = (
        sa.select(_CTID)
        .select_from(table)
        .where(
            column >= sa.func.coalesce(floor, sa.literal_column("'-infinity'::timestamptz")),
            column < sa.func.now() - sa.literal(window, sa.Interval()),
        )
        .order_by(column)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    gone = (
        sa.delete(table)
        .where(_CTID == sa.any_(sa.func.array(due.scalar_subquery())))
        .returning(column.label("at"))
        .cte("gone")
    )
    return sa.select(sa.func.count(), sa.func.max(gone.c.at))
