"""Fakes for the gateway's ports (in-memory user store, scripted upstream services) and fixtures."""

from __future__ import annotations

import importlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx
import pytest
import sqlalchemy as sa


def _unshadow_the_gateway_package() -> None:
    """Run from the workspace root, pytest's importlib mode names this file ``gateway.tests.conftest``
    and registers the folder ``gateway/`` as a namespace package ``gateway``, hiding the real one in
    ``gateway/src/``. Put the real package back before anything imports from it."""
    shadow = sys.modules.get("gateway")
    if shadow is not None and getattr(shadow, "__file__", None) is None:
        del sys.modules["gateway"]
        importlib.import_module("gateway")


_unshadow_the_gateway_package()

from gateway.adapters.security import Argon2Hasher, JwtTokens  # noqa: E402
from gateway.bootstrap import create_app  # noqa: E402
from gateway.config import GatewaySettings  # noqa: E402
from gateway.domain.errors import EmailAlreadyRegistered  # noqa: E402
from gateway.domain.model import Role, User  # noqa: E402

SERVICE_BY_PORT = {
    8001: "catalog",
    8002: "inventory",
    8003: "orders",
    8004: "payments",
    8005: "notifications",
}


class FakeUserRepository:
    def __init__(self, rows: dict[str, User]) -> None:
        self._rows = rows
        self.pending: dict[str, User] = {}

    async def get_by_email(self, email: str) -> User | None:
        return self.pending.get(email) or self._rows.get(email)

    async def add(self, user: User) -> None:
        if user.email in self._rows or user.email in self.pending:
            raise EmailAlreadyRegistered(user.email)
        self.pending[user.email] = user

    async def update(self, user: User) -> None:
        self.pending[user.email] = user


class FakeUnitOfWork:
    def __init__(self, store: FakeUserStore) -> None:
        self._store = store

    async def __aenter__(self) -> FakeUnitOfWork:
        if self._store.broken:
            raise sa.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
        self.users = FakeUserRepository(self._store.rows)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.users.pending.clear()

    async def commit(self) -> None:
        self._store.rows.update(self.users.pending)
        self._store.commits += 1
        self.users.pending.clear()


class FakeUserStore:
    def __init__(self) -> None:
        self.rows: dict[str, User] = {}
        self.commits = 0
        self.is_ready = True
        self.broken = False

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)

    async def ready(self) -> bool:
        return self.is_ready

    async def close(self) -> None:
        pass


Reply = httpx.Response | Callable[[httpx.Request], httpx.Response] | type[Exception]


@dataclass
class FakeServices:
    """Stands in for the five services behind an ``httpx.MockTransport``.

    ``replies[(service, method, path)]`` is a response, a function of the request, or an
    exception class to raise (e.g. ``httpx.ConnectError``); a list is consumed one per call.
    Unscripted calls answer 404 problem+json. Every request is kept in ``calls``.
    """

    replies: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    calls: list[tuple[str, httpx.Request]] = field(default_factory=list)
    down: set[str] = field(default_factory=set)

    def reply(
        self, service: str, method: str, path: str, status: int = 200, body: Any = None, **kw: Any
    ) -> None:
        self.replies[(service, method, path)] = httpx.Response(status, json=body, **kw)

    def requests_to(self, service: str) -> list[httpx.Request]:
        return [r for s, r in self.calls if s == service]

    def handle(self, request: httpx.Request) -> httpx.Response:
        service = SERVICE_BY_PORT[request.url.port]
        self.calls.append((service, request))
        if request.url.path == "/readyz" and (service, "GET", "/readyz") not in self.replies:
            if service in self.down:
                raise httpx.ConnectError("connection refused", request=request)
            return httpx.Response(200, json={"status": "ready"})
        reply = self.replies.get((service, request.method, request.url.path))
        if isinstance(reply, list):
            reply = reply.pop(0)
        if reply is None:
            return httpx.Response(
                404,
                headers={"content-type": "application/problem+json"},
                content=json.dumps(
                    {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "nope"}
                ),
            )
        if isinstance(reply, type) and issubclass(reply, Exception):
            raise reply("scripted failure", request=request)
        if callable(reply):
            return reply(request)
        return reply


SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture
def settings() -> GatewaySettings:
    return GatewaySettings(jwt_secret=SECRET, jwt_ttl_seconds=600, ready_timeout_seconds=0.5)


@pytest.fixture
def store() -> FakeUserStore:
    return FakeUserStore()


@pytest.fixture
def services() -> FakeServices:
    return FakeServices()


@pytest.fixture
def hasher() -> Argon2Hasher:
    return Argon2Hasher(time_cost=1, memory_cost=1024)  # cheap parameters, same algorithm


@pytest.fixture
def tokens(settings: GatewaySettings) -> JwtTokens:
    return JwtTokens(
        secret=settings.jwt_secret, ttl_seconds=settings.jwt_ttl_seconds, issuer=settings.jwt_issuer
    )


@pytest.fixture
async def gateway(
    settings: GatewaySettings, store: FakeUserStore, services: FakeServices, hasher: Argon2Hasher
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings, store=store, upstream_transport=httpx.MockTransport(services.handle), hasher=hasher
    )
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway"
        ) as client:
            yield client


def _user(role: Role) -> User:
    return User(
        id=uuid.uuid4(),
        email=f"{role.value}@example.com",
        name=role.value.title(),
        role=role,
        password_hash="unused",
        created_at=datetime.now(UTC),
    )


@pytest.fixture
def customer() -> User:
    return _user(Role.CUSTOMER)


@pytest.fixture
def admin() -> User:
    return _user(Role.ADMIN)


@pytest.fixture
def as_customer(tokens: JwtTokens, customer: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.issue(customer).access_token}"}


@pytest.fixture
def as_admin(tokens: JwtTokens, admin: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.issue(admin).access_token}"}


@pytest.fixture
def expired_token(settings: GatewaySettings, customer: User) -> str:
    past = JwtTokens(
        secret=settings.jwt_secret,
        ttl_seconds=60,
        issuer=settings.jwt_issuer,
        clock=lambda: time.time() - 3600,
    )
    return past.issue(customer).access_token
