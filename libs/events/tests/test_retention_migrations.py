"""Every service's migrations build the retention purge's indexes, valid, and take them away
again on downgrade (real PostgreSQL; each service's own Alembic history)."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from emporium_kit.migrations import folder, upgrade

SERVICES = ("catalog", "inventory", "orders", "payments", "notifications")
INDEXES = {"outbox_sent_at", "inbox_processed_at", "dead_letters_replayed_at"}


def _indexes(url: str) -> dict[str, bool]:
    """The retention indexes present, and whether each is valid (a failed concurrent build is not)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                    " WHERE c.relname = ANY(:names)"
                ),
                {"names": sorted(INDEXES)},
            )
            return {name: valid for name, valid in rows}
    finally:
        engine.dispose()


def _downgrade_past_retention(url: str, service: str) -> None:
    """Down to the revision before the one that added the retention indexes (later revisions
    of the service go down with it)."""
    script = ScriptDirectory(str(folder(service)))
    [retention] = [
        r for r in script.walk_revisions() if r.module.__file__.endswith("_messaging_retention.py")
    ]
    config = Config()
    config.set_main_option("script_location", str(folder(service)))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.downgrade(config, retention.down_revision)


@pytest.mark.parametrize("service", SERVICES)
async def test_the_retention_indexes_come_with_their_migration_and_go_with_its_downgrade(databases, service):
    pytest.importorskip(service)
    script = ScriptDirectory(str(folder(service)))
    assert len(script.get_heads()) == 1, script.get_heads()
    url = databases.create(f"{service}_migrations")

    await asyncio.to_thread(upgrade, url, folder(service))
    assert await asyncio.to_thread(_indexes, url) == dict.fromkeys(INDEXES, True)

    await asyncio.to_thread(_downgrade_past_retention, url, service)
    assert await asyncio.to_thread(_indexes, url) == {}

    await asyncio.to_thread(upgrade, url, folder(service))
    assert await asyncio.to_thread(_indexes, url) == dict.fromkeys(INDEXES, True)
