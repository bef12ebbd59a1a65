"""Every service's runtime purges its messaging tables on its own (real PostgreSQL, no Kafka)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import create_async_engine

from emporium_events.tables import inbox, messaging_metadata, outbox
from emporium_events.unit_of_work import UnitOfWork
from emporium_kit.runtime import Runtime
from emporium_kit.settings import ServiceSettings, env_prefix


class ShopSettings(ServiceSettings):
    model_config = env_prefix("shop")


async def test_a_service_purges_old_sent_outbox_and_inbox_rows_even_while_kafka_is_away(databases):
    url = databases.create("wiring")
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(messaging_metadata.create_all)
        old = datetime.now(UTC) - timedelta(days=30)
        await conn.execute(
            sa.insert(outbox).values(
                event_id=uuid4(), topic="t", key="k", event_type="e", envelope={}, created_at=old, sent_at=old
            )
        )
        await conn.execute(
            sa.insert(inbox).values(consumer="c", event_id=uuid4(), event_type="e", processed_at=old)
        )
    settings = ShopSettings(
        database_url=url, kafka_bootstrap="127.0.0.1:9", retention_sweep_seconds=0.05, db_pool_size=2
    )
    runtime: Runtime[UnitOfWork] = Runtime(service="shop", settings=settings, uow_class=UnitOfWork)

    async def rows() -> int:
        async with engine.connect() as conn:
            return (
                await conn.execute(
                    sa.select(sa.select(sa.func.count()).select_from(outbox).scalar_subquery()).add_columns(
                        sa.select(sa.func.count()).select_from(inbox).scalar_subquery()
                    )
                )
            ).one()

    await runtime.start()
    try:
        for _ in range(200):
            if tuple(await rows()) == (0, 0):
                break
            await asyncio.sleep(0.05)
        assert tuple(await rows()) == (0, 0)
        assert not runtime.kafka_connected
    finally:
        await runtime.stop()
        await engine.dispose()


def test_the_retention_settings_are_read_from_the_services_own_prefix(monkeypatch):
    monkeypatch.setenv("SHOP_OUTBOX_RETENTION_HOURS", "0.5")
    monkeypatch.setenv("SHOP_INBOX_RETENTION_HOURS", "720")
    monkeypatch.setenv("SHOP_RETENTION_SWEEP_SECONDS", "0")
    monkeypatch.setenv("SHOP_RETENTION_BATCH_SIZE", "200")

    settings = ShopSettings()

    assert (
        settings.outbox_retention_hours,
        settings.inbox_retention_hours,
        settings.retention_sweep_seconds,
        settings.retention_batch_size,
    ) == (0.5, 720, 0, 200)


@pytest.mark.parametrize("name", ["SHOP_OUTBOX_RETENTION_HOURS", "SHOP_INBOX_RETENTION_HOURS"])
def test_a_retention_window_of_zero_is_refused_rather_than_purging_everything(monkeypatch, name):
    monkeypatch.setenv(name, "0")

    with pytest.raises(ValidationError):
        ShopSettings()
