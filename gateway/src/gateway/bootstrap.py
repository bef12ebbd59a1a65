"""Wiring: settings, the user store, the upstream client and the routes, built in the lifespan.

``create_app()`` with no arguments is the production factory (``uvicorn --factory``); tests pass
fakes for the ports: a user store, an httpx transport standing in for the services (then the
upstream client is httpx's, whatever ``GATEWAY_UPSTREAM_CLIENT`` says), a hasher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager

import httpx
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from emporium_kit import observability, problems
from emporium_kit.problems import problem
from gateway.adapters.repository import SqlUserStore
from gateway.adapters.security import Argon2Hasher, JwtTokens
from gateway.adapters.upstream import (
    HttpxTransport,
    Transport,
    Upstreams,
    UpstreamUnavailable,
    make_transport,
)
from gateway.config import DEV_JWT_SECRET, GatewaySettings
from gateway.domain.errors import (
    EmailAlreadyRegistered,
    InvalidCredentials,
    InvalidToken,
)
from gateway.entrypoints.http import NotAuthenticated, UpstreamBadResponse, router
from gateway.service_layer.messagebus import MessageBus
from gateway.service_layer.ports import PasswordHasher, UserStore

log = logging.getLogger(__name__)

SERVICE = "gateway"
RETRY_AFTER_SECONDS = "5"

# Named errors -> status, mapped once. Errors that need headers get their own handler below.
ERROR_STATUS: Mapping[type[Exception], int] = {
    EmailAlreadyRegistered: 409,
    UpstreamBadResponse: 502,
}


def create_app(
    settings: GatewaySettings | None = None,
    *,
    store: UserStore | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    hasher: PasswordHasher | None = None,
) -> FastAPI:
    settings = settings or GatewaySettings()
    observability.configure(SERVICE, log_level=settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per upstream call is too many

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.jwt_secret == DEV_JWT_SECRET:
            log.warning(
                "GATEWAY_JWT_SECRET is the development default; set a random secret outside development"
            )
        user_store = store or SqlUserStore.from_url(settings.database_url, pool_size=settings.db_pool_size)
        urls = settings.upstream_urls()
        timeout, limit = settings.upstream_timeout_seconds, settings.upstream_max_connections
        transports: dict[str, Transport] = {
            name: HttpxTransport(timeout=timeout, max_connections=limit, transport=upstream_transport)
            if upstream_transport is not None
            else make_transport(settings.upstream_client, timeout=timeout, max_connections=limit)
            for name in urls
        }
        tokens = JwtTokens(
            secret=settings.jwt_secret, ttl_seconds=settings.jwt_ttl_seconds, issuer=settings.jwt_issuer
        )
        app.state.store = user_store
        app.state.tokens = tokens
        app.state.upstreams = upstreams = Upstreams(transports, urls)
        app.state.bus = MessageBus(store=user_store, hasher=hasher or Argon2Hasher(), tokens=tokens)
        try:
            yield
        finally:
            await upstreams.aclose()
            if store is None:
                await user_store.close()

    app = FastAPI(
        title="Emporium gateway",
        version="1",
        lifespan=lifespan,
        telemetry=observability.FASTAPI_TELEMETRY_OFF,
    )
    problems.install(app, ERROR_STATUS)
    _install_auth_and_upstream_errors(app)
    observability.instrument(app, SERVICE)

    async def ready() -> dict[str, bool]:
        state = app.state
        database, upstreams = await asyncio.gather(
            _within(state.store.ready(), settings.ready_timeout_seconds),
            state.upstreams.ready(settings.ready_timeout_seconds),
        )
        return {"database": database, **upstreams}

    observability.add_health_routes(app, ready)
    app.include_router(router)
    return app


async def _within(check: Awaitable[bool], timeout: float) -> bool:
    try:
        return await asyncio.wait_for(check, timeout)
    except TimeoutError:
        return False


def _install_auth_and_upstream_errors(app: FastAPI) -> None:
    @app.exception_handler(NotAuthenticated)
    async def not_authenticated(_: Request, exc: NotAuthenticated) -> JSONResponse:
        return problem(401, str(exc), headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(InvalidToken)
    async def invalid_token(_: Request, exc: InvalidToken) -> JSONResponse:
        challenge = (
            f'Bearer error="invalid_token", error_description="{exc.reason.replace(chr(34), chr(39))}"'
        )
        return problem(401, str(exc), title="InvalidToken", headers={"WWW-Authenticate": challenge})

    @app.exception_handler(InvalidCredentials)
    async def invalid_credentials(_: Request, exc: InvalidCredentials) -> JSONResponse:
        return problem(401, str(exc), title="InvalidCredentials", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(sa.exc.OperationalError)
    @app.exception_handler(sa.exc.InterfaceError)
    async def database_unavailable(_: Request, exc: sa.exc.DBAPIError) -> JSONResponse:
        log.warning("user database unavailable: %s", exc.orig or exc)
        return problem(
            503,
            "the user database is unavailable; try again shortly",
            title="DatabaseUnavailable",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )

    @app.exception_handler(UpstreamUnavailable)
    async def upstream_unavailable(_: Request, exc: UpstreamUnavailable) -> JSONResponse:
        return problem(
            503,
            str(exc),
            title="UpstreamUnavailable",
            service=exc.service,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
