import time
import uuid
from datetime import UTC, datetime

import jwt
import pytest

from gateway.adapters.security import Argon2Hasher, JwtTokens
from gateway.domain.errors import InvalidToken
from gateway.domain.model import Role, User


def a_user(role: Role = Role.CUSTOMER) -> User:
    return User(
        id=uuid.uuid4(),
        email="ada@example.com",
        name="Ada",
        role=role,
        password_hash="x",
        created_at=datetime.now(UTC),
    )


async def test_a_hashed_password_verifies_and_a_different_one_does_not(hasher: Argon2Hasher) -> None:
    stored = await hasher.hash("correct horse battery staple")

    assert stored.startswith("$argon2id$")
    assert await hasher.verify(stored, "correct horse battery staple")
    assert not await hasher.verify(stored, "correct horse battery stapler")


async def test_the_same_password_hashes_differently_each_time(hasher: Argon2Hasher) -> None:
    assert await hasher.hash("same password") != await hasher.hash("same password")


async def test_a_corrupt_stored_hash_fails_verification_instead_of_raising(hasher: Argon2Hasher) -> None:
    assert not await hasher.verify("not-a-hash", "whatever1")


def test_a_token_carries_the_user_id_role_and_email(tokens: JwtTokens) -> None:
    user = a_user(Role.ADMIN)

    token = tokens.issue(user)
    principal = tokens.decode(token.access_token)

    assert (principal.user_id, principal.role, principal.email) == (user.id, Role.ADMIN, "ada@example.com")
    assert token.token_type == "bearer" and token.expires_in == 600
    claims = jwt.decode(token.access_token, options={"verify_signature": False})
    assert claims["sub"] == str(user.id) and claims["exp"] - claims["iat"] == 600
    assert jwt.get_unverified_header(token.access_token)["alg"] == "HS256"


def test_an_expired_token_is_rejected(settings) -> None:
    issued_an_hour_ago = JwtTokens(
        secret=settings.jwt_secret,
        ttl_seconds=60,
        issuer=settings.jwt_issuer,
        clock=lambda: time.time() - 3600,
    )
    token = issued_an_hour_ago.issue(a_user()).access_token

    with pytest.raises(InvalidToken, match="expired"):
        JwtTokens(secret=settings.jwt_secret, ttl_seconds=60, issuer=settings.jwt_issuer).decode(token)


def test_a_token_signed_with_another_secret_is_rejected(tokens: JwtTokens, settings) -> None:
    forged = JwtTokens(
        secret="another-secret-another-secret-another!", ttl_seconds=60, issuer=settings.jwt_issuer
    )

    with pytest.raises(InvalidToken):
        tokens.decode(forged.issue(a_user()).access_token)


def test_an_unsigned_token_is_rejected(tokens: JwtTokens) -> None:
    now = int(time.time())
    unsigned = jwt.encode(
        {
            "sub": str(uuid.uuid4()),
            "role": "admin",
            "email": "x@y.z",
            "iss": "emporium-gateway",
            "iat": now,
            "exp": now + 60,
        },
        key=None,
        algorithm="none",
    )

    with pytest.raises(InvalidToken):
        tokens.decode(unsigned)


def test_a_token_with_an_unknown_role_is_rejected(tokens: JwtTokens, settings) -> None:
    now = int(time.time())
    token = jwt.encode(
        {
            "sub": str(uuid.uuid4()),
            "role": "root",
            "email": "x@y.z",
            "iss": settings.jwt_issuer,
            "iat": now,
            "exp": now + 60,
        },
        settings.jwt_secret,
        algorithm="HS256",
    )

    with pytest.raises(InvalidToken, match="malformed"):
        tokens.decode(token)


# ---------------------------------------------------------------------------- verified once per token


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def verifications(monkeypatch) -> list[str]:
    """Every token PyJWT is asked to verify."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args, **kwargs):
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr("gateway.adapters.security.jwt.decode", counting)
    return seen


def test_a_token_is_verified_once_while_it_is_valid(tokens: JwtTokens, verifications) -> None:
    user = a_user()
    token = tokens.issue(user).access_token

    principals = [tokens.decode(token) for _ in range(3)]

    assert verifications == [token]
    assert {p.user_id for p in principals} == {user.id}


def test_a_remembered_token_is_refused_once_it_has_expired(settings, verifications) -> None:
    clock = Clock()
    tokens = JwtTokens(secret=settings.jwt_secret, ttl_seconds=60, issuer=settings.jwt_issuer, clock=clock)
    token = tokens.issue(a_user()).access_token
    tokens.decode(token)

    clock.now += 59
    tokens.decode(token)  # still valid, still remembered
    clock.now += 2
    with pytest.raises(InvalidToken, match="expired"):
        tokens.decode(token)
    with pytest.raises(InvalidToken, match="expired"):
        tokens.decode(token)  # forgotten: verified again, and refused again
    assert len(verifications) == 2


def test_a_tampered_token_is_refused_while_the_genuine_one_is_remembered(tokens: JwtTokens, settings) -> None:
    token = tokens.issue(a_user(Role.CUSTOMER)).access_token
    tokens.decode(token)
    header, payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    admin_payload = jwt.encode({**claims, "role": "admin"}, "x" * 32, algorithm="HS256").split(".")[1]
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]

    for tampered in (f"{header}.{admin_payload}.{signature}", f"{header}.{payload}.{flipped}"):
        with pytest.raises(InvalidToken):
            tokens.decode(tampered)
    assert tokens.decode(token).role is Role.CUSTOMER


def test_a_token_remembered_under_one_secret_is_refused_under_another(tokens: JwtTokens, settings) -> None:
    token = tokens.issue(a_user()).access_token
    tokens.decode(token)
    rotated = JwtTokens(
        secret="a-rotated-secret-a-rotated-secret-a-rotated", ttl_seconds=600, issuer=settings.jwt_issuer
    )

    with pytest.raises(InvalidToken):
        rotated.decode(token)


def test_a_forgotten_token_or_users_tokens_are_verified_again(tokens: JwtTokens, verifications) -> None:
    ada, bob = a_user(), a_user()
    ada_token, bob_token = tokens.issue(ada).access_token, tokens.issue(bob).access_token
    tokens.decode(ada_token)
    tokens.decode(bob_token)

    tokens.forget(ada_token)
    tokens.forget_user(bob.id)
    tokens.decode(ada_token)
    tokens.decode(bob_token)

    assert verifications == [ada_token, bob_token, ada_token, bob_token]


def test_at_most_cache_size_tokens_are_remembered_the_oldest_going_first(settings, verifications) -> None:
    tokens = JwtTokens(secret=settings.jwt_secret, ttl_seconds=60, issuer=settings.jwt_issuer, cache_size=2)
    first, second, third = (tokens.issue(a_user()).access_token for _ in range(3))
    for token in (first, second, third, second, third, first):
        tokens.decode(token)

    assert verifications == [first, second, third, first]
