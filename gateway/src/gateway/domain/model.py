"""Users and the identity the gateway vouches for to the services behind it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

# Deliberately loose (one @, a dot in the domain, no spaces): the only real check of an e-mail
# address is a message that arrives. RFC 5321 caps a path at 254 characters.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
EMAIL_MAX_LENGTH = 254
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 1024  # bounds the hashing work one request can ask for


class Role(StrEnum):
    CUSTOMER = "customer"
    ADMIN = "admin"


def normalize_email(email: str) -> str:
    """E-mail addresses are stored and compared lower-cased and trimmed."""
    return email.strip().lower()


def is_valid_email(email: str) -> bool:
    # ASCII only: the address travels to the services in an HTTP header (X-User-Email).
    return len(email) <= EMAIL_MAX_LENGTH and email.isascii() and _EMAIL.match(email) is not None


@dataclass
class User:
    id: UUID
    email: str
    name: str
    role: Role
    password_hash: str
    created_at: datetime

    def promote_to_admin(self, *, name: str, password_hash: str | None) -> None:
        self.role = Role.ADMIN
        self.name = name
        if password_hash is not None:
            self.password_hash = password_hash


@dataclass(frozen=True)
class Principal:
    """Who a valid access token says the caller is."""

    user_id: UUID
    email: str
    role: Role


@dataclass(frozen=True)
class AccessToken:
    """A signed statement of a Principal, good for ``expires_in`` seconds."""

    access_token: str
    expires_in: int
    token_type: str = "bearer"
