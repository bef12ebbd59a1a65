"""Payments' test fixtures: a migrated database, and a counter of round trips to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
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
    """Statements (``before_cursor_execute``, one per statement sent, a multi-row INSERT
    counting once) plus BEGIN and COMMIT/ROLLBACK of each transaction that ran one: psycopg
    sends BEGIN before a transaction's first statement, and nothing on a connection in
    autocommit. Use as a context manager."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.sync_engine
        self._key = object()  # this counter's mark of an open transaction in Connection.info
        self.statements = 0
        self.transactions = 0

    def __enter__(self) -> RoundTrips:
        event.listen(self._engine, "before_cursor_execute", self._statement)
        event.listen(self._engine, "commit", self._end)
        event.listen(self._engine, "rollback", self._end)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self._engine, "before_cursor_execute", self._statement)
        event.remove(self._engine, "commit", self._end)
        event.remove(self._engine, "rollback", self._end)

    @property
    def total(self) -> int:
        return self.statements + 2 * self.transactions

    def _statement(self, conn: Any, *_: Any) -> None:
        self.statements += 1
        if not conn.connection.dbapi_connection.autocommit and self._key not in conn.info:
            conn.info[self._key] = True
            self.transactions += 1

    def _end(self, conn: Any) -> None:
        conn.info.pop(self._key, None)
