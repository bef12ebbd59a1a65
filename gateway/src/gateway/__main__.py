"""``python -m gateway serve|migrate|seed-admin`` (settings from ``GATEWAY_*``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

import sqlalchemy as sa
import uvicorn

from emporium_kit import logs, migrations
from gateway.adapters.repository import SqlUserStore
from gateway.adapters.security import Argon2Hasher, JwtTokens
from gateway.config import GatewaySettings
from gateway.domain.commands import SeedAdmin
from gateway.domain.model import PASSWORD_MIN_LENGTH, is_valid_email, normalize_email
from gateway.service_layer.messagebus import MessageBus


async def _seed_admin(settings: GatewaySettings) -> None:
    store = SqlUserStore.from_url(settings.database_url, pool_size=1)
    try:
        bus = MessageBus(
            store=store,
            hasher=Argon2Hasher(),
            tokens=JwtTokens(
                secret=settings.jwt_secret, ttl_seconds=settings.jwt_ttl_seconds, issuer=settings.jwt_issuer
            ),
        )
        user = await bus.handle(
            SeedAdmin(
                user_id=uuid.uuid4(),
                email=settings.admin_email,
                password=settings.admin_password,
                name=settings.admin_name,
            )
        )
        print(f"admin {user.email} ready (id {user.id})")
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gateway", description="Emporium API gateway")
    parser.add_argument("command", choices=["serve", "migrate", "seed-admin"])
    args = parser.parse_args(argv)
    settings = GatewaySettings()

    if args.command == "migrate":
        migrations.upgrade(settings.database_url, migrations.folder("gateway"))
        return
    if args.command == "seed-admin":
        email_ok = is_valid_email(normalize_email(settings.admin_email))
        if not email_ok or len(settings.admin_password) < PASSWORD_MIN_LENGTH:
            sys.exit(
                "GATEWAY_ADMIN_EMAIL must be an e-mail address and GATEWAY_ADMIN_PASSWORD at least "
                f"{PASSWORD_MIN_LENGTH} characters"
            )
        try:
            asyncio.run(_seed_admin(settings))
        except sa.exc.SQLAlchemyError as exc:
            sys.exit(f"seed-admin failed: {exc}")
        return
    logs.configure("gateway", level=settings.log_level)
    uvicorn.run(
        "gateway.bootstrap:create_app",
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


if __name__ == "__main__":
    main()
