"""``python -m <service> serve|migrate``: the same two verbs for every service."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import uvicorn

from emporium_kit import logs, migrations
from emporium_kit.settings import ServiceSettings


def main(
    *,
    service: str,
    settings_factory: Callable[[], ServiceSettings],
    app_factory: str,
    migrations_dir: Path | None = None,
    argv: list[str] | None = None,
) -> None:
    parser = argparse.ArgumentParser(prog=service)
    parser.add_argument("command", choices=["serve", "migrate"])
    args = parser.parse_args(argv)
    settings = settings_factory()
    if args.command == "migrate":
        # By default the ``migrations/`` folder installed inside the service's own package.
        migrations.upgrade(settings.database_url, migrations_dir or migrations.folder(service))
        return
    logs.configure(service, level=settings.log_level)
    uvicorn.run(
        app_factory,
        log_config=None,  # uvicorn's loggers go through ours (JSON lines or LOG_FORMAT=text)
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )
