"""Test support: a fake unit of work for unit tests of handlers (a fake of our own port, never
of Kafka), and a counter of what really goes to PostgreSQL for integration tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self
from uuid import UUID

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from emporium_events.contracts import Event
from emporium_events.envelope import Envelope


class FakeUnitOfWork:
    """Records what a handler published and whether it committed. Subclass to add fake repositories."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self.committed = 0
        self.causation: Envelope | None = None
        self._seen: set[tuple[str, UUID]] = set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def collect(self) -> None:
        return None

    async def commit(self) -> None:
        await self.collect()
        self.committed += 1

    async def rollback(self) -> None:
        return None

    async def claim_many(self, *, consumer: str, envelopes: Sequence[Envelope]) -> set[UUID]:
        fresh = {e.event_id for e in envelopes if (consumer, e.event_id) not in self._seen}
        self._seen |= {(consumer, event_id) for event_id in fresh}
        return fresh

    def publish(
        self,
        event: Event,
        *,
        aggregate_id: UUID | str,
        cause: Any = None,
        correlation_id: str | None = None,
    ) -> Envelope:
        self.published.append(event)
        return Envelope.wrap(event, producer="test", aggregate_id=str(aggregate_id))

    def published_types(self) -> list[str]:
        return [type(e).__name__ for e in self.published]


class RoundTrips:
    """What the connections of ``engine``'s pool send PostgreSQL while it watches (from its
    creation until ``close()`` or the end of its ``with`` block): each statement (its first
    word in ``statements``), the BEGIN psycopg sends before a transaction's first statement, and
    the COMMIT or ROLLBACK that ends that transaction. Counted in psycopg's cursors, so that
    SQLAlchemy's statements and the raw ones on a unit of work's ``db`` both count; a connection
    in autocommit sends no BEGIN."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.sync_engine
        self.statements: list[str] = []
        self.transactions = 0
        trips = self

        class Counted(psycopg.AsyncCursor[Any]):
            async def execute(self, query: Any, *args: Any, **kwargs: Any) -> Self:
                trips._sent(self.connection, query)
                return await super().execute(query, *args, **kwargs)

            async def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
                trips._sent(self.connection, query)  # one statement, however many parameter sets
                await super().executemany(query, *args, **kwargs)

        self._cursor = Counted
        event.listen(self._engine, "checkout", self._watch)
        event.listen(self._engine, "checkin", self._unwatch)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        event.remove(self._engine, "checkout", self._watch)
        event.remove(self._engine, "checkin", self._unwatch)

    @property
    def total(self) -> int:
        """Round trips: the statements, and a BEGIN and an end for each transaction."""
        return len(self.statements) + 2 * self.transactions

    def reset(self) -> None:
        self.statements, self.transactions = [], 0

    def _watch(self, dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.driver_connection.cursor_factory = self._cursor

    def _unwatch(self, dbapi_connection: Any, *_: Any) -> None:
        if dbapi_connection is not None:
            dbapi_connection.driver_connection.cursor_factory = psycopg.AsyncCursor

    def _sent(self, connection: psycopg.AsyncConnection[Any], query: Any) -> None:
        text = query.decode() if isinstance(query, bytes) else str(query)
        self.statements.append(text.split(None, 1)[0].upper() if text.strip() else "")
        if not connection.autocommit and connection.info.transaction_status == TransactionStatus.IDLE:
            self.transactions += 1
