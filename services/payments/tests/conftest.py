"""Payments' test fixtures: a migrated database, and a counter of round trips to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from emporium_events.testing import RoundTrips
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
