"""Use cases: register, log in, seed the admin. Plain async functions; one user per transaction."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.domain.commands import LogIn, RegisterUser, SeedAdmin
from gateway.domain.errors import EmailAlreadyRegistered, InvalidCredentials
from gateway.domain.model import AccessToken, Role, User, normalize_email
from gateway.service_layer.ports import PasswordHasher, TokenIssuer, UnitOfWork


async def register_user(cmd: RegisterUser, *, uow: UnitOfWork, hasher: PasswordHasher) -> User:
    email = normalize_email(cmd.email)
    password_hash = await hasher.hash(cmd.password)
    user = User(
        id=cmd.user_id,
        email=email,
        name=cmd.name,
        role=Role.CUSTOMER,
        password_hash=password_hash,
        created_at=datetime.now(UTC),
    )
    async with uow:
        if await uow.users.get_by_email(email) is not None:
            raise EmailAlreadyRegistered(email)
        await uow.users.add(user)  # the unique index still decides a race
        await uow.commit()
    return user


async def log_in(cmd: LogIn, *, uow: UnitOfWork, hasher: PasswordHasher, tokens: TokenIssuer) -> AccessToken:
    async with uow:
        user = await uow.users.get_by_email(normalize_email(cmd.email))
    if user is None:
        await hasher.burn(cmd.password)
        raise InvalidCredentials()
    if not await hasher.verify(user.password_hash, cmd.password):
        raise InvalidCredentials()
    return tokens.issue(user)


async def seed_admin(cmd: SeedAdmin, *, uow: UnitOfWork, hasher: PasswordHasher) -> User:
    """Idempotent: creates the admin, or makes the existing account an admin with the given password."""
    email = normalize_email(cmd.email)
    async with uow:
        user = await uow.users.get_by_email(email)
        if user is None:
            user = User(
                id=cmd.user_id,
                email=email,
                name=cmd.name,
                role=Role.ADMIN,
                password_hash=await hasher.hash(cmd.password),
                created_at=datetime.now(UTC),
            )
            await uow.users.add(user)
        else:
            unchanged = await hasher.verify(user.password_hash, cmd.password)
            user.promote_to_admin(
                name=cmd.name, password_hash=None if unchanged else await hasher.hash(cmd.password)
            )
            await uow.users.update(user)
        await uow.commit()
    return user
