"""Users in PostgreSQL: repository, unit of work and the store that hands them out."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from emporium_kit.db import make_engine, make_session_factory
from gateway.adapters.orm import users
from gateway.domain.errors import EmailAlreadyRegistered
from gateway.domain.model import Role, User


def _to_user(row: sa.Row[*tuple[Any, ...]]) -> User:
    return User(
        id=row.id,
        email=row.email,
        name=row.name,
        role=Role(row.role),
        password_hash=row.password_hash,
        created_at=row.created_at,
    )


class SqlUserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get_by_email(self, email: str) -> User | None:
        row = (await self._session.execute(sa.select(users).where(users.c.email == email))).one_or_none()
        return None if row is None else _to_user(row)

    async def add(self, user: User) -> None:
        inserted = await self._session.execute(
            insert(users)
            .values(
                id=user.id,
                email=user.email,
                name=user.name,
                role=user.role.value,
                password_hash=user.password_hash,
                created_at=user.created_at,
            )
            .on_conflict_do_nothing(index_elements=[users.c.email])
            .returning(users.c.id)
        )
        if inserted.scalar_one_or_none() is None:
            raise EmailAlreadyRegistered(user.email)

    async def update(self, user: User) -> None:
        await self._session.execute(
            sa.update(users)
            .where(users.c.id == user.id)
            .values(name=user.name, role=user.role.value, password_hash=user.password_hash)
        )


class SqlUnitOfWork:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def __aenter__(self) -> SqlUnitOfWork:
        self._session = self._session_factory()
        await self._session.begin()
        self.users = SqlUserRepository(self._session)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._session.rollback()  # a no-op after commit
        finally:
            await self._session.close()

    async def commit(self) -> None:
        await self._session.commit()


class SqlUserStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._session_factory = make_session_factory(engine)

    @classmethod
    def from_url(cls, url: str, *, pool_size: int) -> SqlUserStore:
        return cls(make_engine(url, pool_size=pool_size))

    def uow(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._session_factory)

    async def ready(self, timeout: float = 2.0) -> bool:
        try:
            async with asyncio.timeout(timeout):
                async with self._engine.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
            return True
        except (sa.exc.SQLAlchemyError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        await self._engine.dispose()
