"""Fixtures of the notifications tests: a migrated database and a counter of its round trips."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from emporium_events.testing import RoundTrips
from emporium_kit.db import make_session_factory
from emporium_kit.migrations import folder, upgrade

MIGRATIONS = folder("notifications")


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
