"""What the handlers need from the outside world; adapters/ implements, tests fake."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from gateway.domain.model import AccessToken, Principal, User


class UserRepository(Protocol):
    async def get_by_email(self, email: str) -> User | None: ...

    async def add(self, user: User) -> None:
        """Insert ``user``; raises EmailAlreadyRegistered if the e-mail is taken."""

    async def update(self, user: User) -> None: ...


class UnitOfWork(Protocol):
    @property
    def users(self) -> UserRepository: ...

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def commit(self) -> None: ...


class UserStore(Protocol):
    """The gateway's own database: units of work over users, and a readiness probe."""

    def uow(self) -> UnitOfWork: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool: ...

    async def burn(self, password: str) -> None:
        """Spend the time a verification would, so unknown e-mails cost the same as wrong passwords."""


class TokenIssuer(Protocol):
    def issue(self, user: User) -> AccessToken: ...

    def decode(self, token: str) -> Principal:
        """Raises InvalidToken."""
