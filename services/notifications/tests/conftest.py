"""Fixtures of the notifications tests: a migrated database and a counter of its round trips."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from psycopg import pq
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from emporium_kit.db import make_session_factory
from emporium_kit.migrations import folder, upgrade

MIGRATIONS = folder("notifications")


class RoundTrips:
    """Counts what psycopg sends PostgreSQL, one request and its answer each: every statement,
    the BEGIN psycopg sends before the first statement of a transaction, and the COMMIT or
    ROLLBACK that ends one (a commit outside a transaction sends nothing, and is not counted)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements: list[str] = []
        self.begins = self.ends = 0
        sync = engine.sync_engine
        sa.event.listen(sync, "before_cursor_execute", self._execute)
        sa.event.listen(sync, "commit", self._end)
        sa.event.listen(sync, "rollback", self._end)

    @staticmethod
    def _driver(conn: sa.Connection) -> Any:
        return conn.connection.dbapi_connection._connection  # type: ignore[union-attr]

    def _execute(self, conn: sa.Connection, _cursor: Any, statement: str, *_: Any) -> None:
        driver = self._driver(conn)
        if not driver.autocommit and driver.info.transaction_status == pq.TransactionStatus.IDLE:
            self.begins += 1
        self.statements.append(statement.split(None, 1)[0].upper())

    def _end(self, conn: sa.Connection) -> None:
        if self._driver(conn).info.transaction_status != pq.TransactionStatus.IDLE:
            self.ends += 1

    @property
    def total(self) -> int:
        return len(self.statements) + self.begins + self.ends

    def reset(self) -> None:
        self.statements, self.begins, self.ends = [], 0, 0


@pytest.fixture
async def engine(databases: Any) -> AsyncIterator[AsyncEngine]:
    url = databases.create("notifications")
    await asyncio.to_thread(upgrade, url, MIGRATIONS)
    engine = create_async_engine(url, pool_size=10)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_session_factory(engine)


@pytest.fixture
def round_trips(engine: AsyncEngine) -> Callable[[], RoundTrips]:
    return lambda: RoundTrips(engine)
