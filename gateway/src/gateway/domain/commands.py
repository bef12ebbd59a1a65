"""Commands the gateway's handlers accept (imperative names)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True)
class RegisterUser:
    user_id: UUID
    email: str
    password: str
    name: str


@dataclass(frozen=True)
class LogIn:
    email: str
    password: str


@dataclass(frozen=True)
class SeedAdmin:
    """Create the admin account, or bring an existing one back to the configured state."""

    user_id: UUID
    email: str
    password: str
    name: str
