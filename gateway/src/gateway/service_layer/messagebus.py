"""One table from command type to handler, and the dependencies every handler may ask for."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.domain.commands import LogIn, RegisterUser, SeedAdmin
from gateway.service_layer import handlers
from gateway.service_layer.ports import PasswordHasher, TokenIssuer, UserStore

HANDLERS: dict[type, Callable[..., Awaitable[Any]]] = {
    RegisterUser: handlers.register_user,
    LogIn: handlers.log_in,
    SeedAdmin: handlers.seed_admin,
}


class MessageBus:
    def __init__(self, *, store: UserStore, hasher: PasswordHasher, tokens: TokenIssuer) -> None:
        self._store = store
        self._hasher = hasher
        self._tokens = tokens

    async def handle(self, cmd: object) -> Any:
        handler = HANDLERS[type(cmd)]
        available: dict[str, Any] = {"uow": self._store.uow(), "hasher": self._hasher, "tokens": self._tokens}
        wanted = inspect.signature(handler).parameters
        return await handler(cmd, **{name: dep for name, dep in available.items() if name in wanted})
