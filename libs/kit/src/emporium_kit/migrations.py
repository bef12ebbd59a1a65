"""Alembic, driven from code: each service ships its own ``migrations/`` folder and history
inside its package (``<package>/migrations``), so an installed wheel can migrate with no checkout."""

from __future__ import annotations

import asyncio
import importlib.resources
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def folder(package: str) -> Path:
    """The ``migrations/`` folder inside the installed `package` (a wheel, or the editable source).

    Alembic reads ``env.py``, ``script.py.mako`` and ``versions/`` from a directory on disk, so
    the package must be installed unzipped (pip and uv always do)."""
    location = importlib.resources.files(package) / "migrations"
    if not isinstance(location, Path) or not (location / "env.py").is_file():
        raise RuntimeError(f"{package} ships no migrations/env.py on disk (looked in {location})")
    return location


def upgrade(database_url: str, script_location: Path, revision: str = "head") -> None:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, revision)


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's ``migrations/env.py`` (online, async engine)."""
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic: sqlalchemy.url is not set")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(migrate)
        await engine.dispose()

    asyncio.run(main())
