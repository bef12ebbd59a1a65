"""Async engine and sessions (psycopg 3)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from emporium_events.unit_of_work import psycopg_of


def make_engine(url: str, *, pool_size: int = 6) -> AsyncEngine:
    # Overflow connections are closed as soon as they are returned, so under steady concurrency
    # above pool_size each request paid a new PostgreSQL connection (bench/results/profile):
    # a larger steady pool and a small overflow instead. No pre-ping (a round trip on every
    # checkout): a connection found dead invalidates the pool, and the caller's retry (consumers)
    # or 503 (HTTP) covers the one failed use. Six steady connections (issue 11, was 20): a process's
    # transactions are short and its CPU, not its connections, is what limits it; more
    # connections only spread the plan caches and the server's work over more backends. Not
    # fewer: an overflow connection is a new backend per use, and POST /orders alone has ~5
    # requests in flight at 100 orders/s.
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=max(2, pool_size // 4), pool_recycle=1800, pool_pre_ping=False
    )


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def autocommit(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection from the pool of ``sessions``' engine, in autocommit, as its psycopg connection
    (for statements run on psycopg directly): each statement is its own transaction, and the pool
    resets the isolation level when it takes the connection back."""
    engine = sessions.kw.get("bind")
    if not isinstance(engine, AsyncEngine):
        raise TypeError("autocommit needs a session factory bound to an AsyncEngine")
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        yield await psycopg_of(connection)
