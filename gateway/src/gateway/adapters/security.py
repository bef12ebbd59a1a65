"""argon2id password hashes and HS256 access tokens (RFC 7519)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from uuid import UUID

import jwt
from argon2 import PasswordHasher as Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.domain.errors import InvalidToken
from gateway.domain.model import AccessToken, Principal, Role, User


class Argon2Hasher:
    """argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile) unless told otherwise.

    Hashing is CPU-bound for tens of milliseconds, so it runs in a worker thread, never on the loop.
    """

    def __init__(self, *, time_cost: int | None = None, memory_cost: int | None = None) -> None:
        defaults = Argon2()
        self._argon2 = Argon2(
            type=Type.ID,
            time_cost=defaults.time_cost if time_cost is None else time_cost,
            memory_cost=defaults.memory_cost if memory_cost is None else memory_cost,
        )
        self._decoy = self._argon2.hash("decoy password, never matches")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._argon2.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash, password)

    async def burn(self, password: str) -> None:
        await asyncio.to_thread(self._verify, self._decoy, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


class JwtTokens:
    """Issues and verifies access tokens. A verified token is remembered until its ``exp``, so a
    caller's requests after the first cost a dictionary lookup instead of an HMAC and a JSON
    parse: the cache is keyed by the whole token, so a tampered token (or one signed with another
    secret) is a different key and is verified, and refused, like any new token. At most
    ``cache_size`` tokens are kept (the oldest go first). ``forget``/``forget_user`` drop entries,
    for revocation."""

    ALGORITHM = "HS256"

    def __init__(
        self,
        *,
        secret: str,
        ttl_seconds: int,
        issuer: str,
        clock: Callable[[], float] = time.time,
        cache_size: int = 10_000,
    ) -> None:
        self._secret = secret
        self._ttl = ttl_seconds
        self._issuer = issuer
        self._clock = clock
        self._cache_size = cache_size
        self._verified: dict[str, tuple[Principal, float]] = {}  # token -> (principal, exp)

    def issue(self, user: User) -> AccessToken:
        now = int(self._clock())
        claims = {
            "sub": str(user.id),
            "email": user.email,
            "role": user.role.value,
            "iss": self._issuer,
            "iat": now,
            "exp": now + self._ttl,
        }
        token = jwt.encode(claims, self._secret, algorithm=self.ALGORITHM)
        return AccessToken(access_token=token, expires_in=self._ttl)

    def decode(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None:
            principal, expires_at = known
            if self._clock() < expires_at:
                return principal
            del self._verified[token]
            raise InvalidToken("token has expired")
        principal, expires_at = self._verify(token)
        if len(self._verified) >= self._cache_size:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (principal, expires_at)
        return principal

    def forget(self, token: str) -> None:
        """The token is verified again on its next use."""
        self._verified.pop(token, None)

    def forget_user(self, user_id: UUID) -> None:
        """Every remembered token of this user is verified again on its next use."""
        for token in [t for t, (p, _) in self._verified.items() if p.user_id == user_id]:
            del self._verified[token]

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self.ALGORITHM],
                issuer=self._issuer,
                options={"require": ["sub", "exp", "iat", "iss", "role", "email"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(str(exc) or type(exc).__name__) from None
        try:
            principal = Principal(
                user_id=UUID(claims["sub"]), email=str(claims["email"]), role=Role(claims["role"])
            )
            expires_at = float(claims["exp"])
        except (ValueError, TypeError):
            raise InvalidToken("malformed claims") from None
        if self._clock() >= expires_at:  # PyJWT reads the wall clock; an injected one is honoured too
            raise InvalidToken("token has expired")
        return principal, expires_at
