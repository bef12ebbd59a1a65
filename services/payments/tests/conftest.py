"""Payments' test fixtures: a migrated database, and a counter of round trips to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Self

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from emporium_kit.db import make_session_factory
from emporium_kit.migrations import folder, upgrade


@pytest.fixture
async def engine(databases: Any) -> AsyncIterator[AsyncEngine]:
    url = databases.create("payments")
    await asyncio.to_thread(upgrade, url, folder("payments"))
    engine = create_async_engine(url, pool_size=12)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_session_factory(engine)


@pytest.fixture
def round_trips(engine: AsyncEngine) -> Callable[[], RoundTrips]:
    """``with round_trips() as trips: ...`` counts what the block sends to the database."""
    return lambda: RoundTrips(engine)


class RoundTrips:
    """Statements plus BEGIN and COMMIT/ROLLBACK of each transaction that ran one, counted in
    psycopg's cursors, so that SQLAlchemy's statements and the raw ones on a unit of work's
    ``db`` both count: psycopg sends BEGIN before a transaction's first statement, and nothing on
    a connection in autocommit. It watches the connections checked out of the engine's pool
    while it is open. Use as a context manager."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.sync_engine
        self.statements = 0
        self.transactions = 0
        trips = self

        class Counted(psycopg.AsyncCursor[Any]):
            async def execute(self, *args: Any, **kwargs: Any) -> Self:
                trips._sent(self.connection)
                return await super().execute(*args, **kwargs)

            async def executemany(self, *args: Any, **kwargs: Any) -> None:
                trips._sent(self.connection)  # one statement, as SQLAlchemy's event counted it
                await super().executemany(*args, **kwargs)

        self._cursor = Counted

    def __enter__(self) -> RoundTrips:
        event.listen(self._engine, "checkout", self._watch)
        event.listen(self._engine, "checkin", self._unwatch)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self._engine, "checkout", self._watch)
        event.remove(self._engine, "checkin", self._unwatch)

    @property
    def total(self) -> int:
        return self.statements + 2 * self.transactions

    def _watch(self, dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.driver_connection.cursor_factory = self._cursor

    def _unwatch(self, dbapi_connection: Any, *_: Any) -> None:
        if dbapi_connection is not None:
            dbapi_connection.driver_connection.cursor_factory = psycopg.AsyncCursor

    def _sent(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self.statements += 1
        if not connection.autocommit and connection.info.transaction_status == TransactionStatus.IDLE:
            self.transactions += 1
