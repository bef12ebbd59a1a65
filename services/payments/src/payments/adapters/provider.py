"""The payment-provider port and the sandbox that behaves like a card processor's test mode."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import uuid4

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium_kit.db import autocommit


@dataclass(frozen=True)
class ProviderResult:
    approved: bool
    operation_id: str
    decline_code: str | None = None
    amount_cents: int | None = None
    currency: str | None = None


@dataclass(frozen=True)
class Charge:
    idempotency_key: str
    token: str
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class Refund:
    idempotency_key: str
    charge_id: str
    amount_cents: int
    currency: str


class PaymentProvider(Protocol):
    """A batch's operations at once, each answered under its own idempotency key: the same key
    always gets the first answer, and what the provider did stays done whatever becomes of our
    transaction. A provider without a batch API makes the calls one after another (or
    concurrently); the handlers need not know."""

    async def charge_many(self, charges: Sequence[Charge]) -> dict[str, ProviderResult]:
        """Each charge's answer, by idempotency key."""
        ...

    async def refund_many(self, refunds: Sequence[Refund]) -> dict[str, ProviderResult]:
        """Each refund's answer, by idempotency key."""
        ...

    async def lookup_many(self, *, idempotency_keys: Sequence[str]) -> dict[str, ProviderResult]:
        """What the provider did under these keys, for the keys it did anything under."""
        ...


# Test-mode card tokens, as a card processor's sandbox documents them.
DECLINES = {
    "tok_chargeDeclined": "card_declined",
    "tok_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "tok_chargeDeclinedExpiredCard": "expired_card",
}
APPROVED = {"tok_visa", "tok_mastercard", "tok_amex"}


def decline_code(token: str) -> str | None:
    """The sandbox's answer to a test-mode token: None approves."""
    return None if token in APPROVED else DECLINES.get(token, "invalid_token")


class SandboxProvider:
    """Keeps its own ledger in its own transactions, as a remote provider would: a charge it has
    made stays made even if our transaction then rolls back, and the same idempotency key always
    returns the first answer.

    A batch is one statement on a connection of its own in autocommit (its own transaction, one
    round trip rather than BEGIN, statement, COMMIT); only keys it has answered before cost a
    second statement, to read their first answers. They run per batch, so they go straight to
    psycopg on that pooled connection, with neither SQLAlchemy's execution layer nor a session,
    for the unit of work's reasons (bench/results/dbclients)."""

    def __init__(self, sessions: Callable[[], async_sessionmaker[AsyncSession]]) -> None:
        self._sessions = sessions  # resolved per call: the engine exists only once the service runs

    async def charge_many(self, charges: Sequence[Charge]) -> dict[str, ProviderResult]:
        return await self._once(
            [
                _operation(c.idempotency_key, "charge", decline_code(c.token), c.amount_cents, c.currency)
                for c in charges
            ]
        )

    async def refund_many(self, refunds: Sequence[Refund]) -> dict[str, ProviderResult]:
        return await self._once(
            [_operation(r.idempotency_key, "refund", None, r.amount_cents, r.currency) for r in refunds]
        )

    async def lookup_many(self, *, idempotency_keys: Sequence[str]) -> dict[str, ProviderResult]:
        if not idempotency_keys:
            return {}
        async with self._autocommit() as db:
            cursor = await db.execute(_LOOKUP, (sorted(set(idempotency_keys)),))
            return _results(await cursor.fetchall())

    async def _once(self, operations: list[tuple[Any, ...]]) -> dict[str, ProviderResult]:
        """Record each operation unless its key is known; every key's first answer."""
        if not operations:
            return {}
        # In key order, so that two batches racing on the same keys wait rather than deadlock.
        rows = sorted({op[0]: op for op in operations}.values(), key=_by_key)
        async with self._autocommit() as db:
            cursor = await db.execute(_RECORD, [list(column) for column in zip(*rows, strict=True)])
            made = _results(await cursor.fetchall())
            known = [row[0] for row in rows if row[0] not in made]
            if known:  # answered before (a redelivery, or a race another call won): the first answer
                cursor = await db.execute(_LOOKUP, (known,))
                made.update(_results(await cursor.fetchall()))
        return made

    def _autocommit(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return autocommit(self._sessions())


def _operation(key: str, kind: str, decline: str | None, amount_cents: int, currency: str) -> tuple[Any, ...]:
    """A ledger row, in _RECORD's column order."""
    prefix = "ch" if kind == "charge" else "re"
    return (key, kind, f"{prefix}_{uuid4().hex[:24]}", decline is None, decline, amount_cents, currency)


def _by_key(operation: tuple[Any, ...]) -> str:
    return str(operation[0])


def _results(rows: list[tuple[Any, ...]]) -> dict[str, ProviderResult]:
    """Answers by key, from rows of _RECORD's RETURNING or _LOOKUP."""
    return {
        key: ProviderResult(
            approved=approved,
            operation_id=operation_id,
            decline_code=decline,
            amount_cents=amount_cents,
            currency=currency,
        )
        for key, approved, operation_id, decline, amount_cents, currency in rows
    }


# Raw, per batch (why: the class's docstring), built once; arrays go as %b, binary (psycopg
# writes a text array element by element in Python). The rows keep the keys' order (WITH
# ORDINALITY), and a key already in the ledger returns nothing (DO NOTHING waits for a racing
# insert to commit first, so the following lookup, a statement of its own, sees it).
_RECORD = (
    "INSERT INTO sandbox_provider_operations"
    " (idempotency_key, kind, operation_id, approved, decline_code, amount_cents, currency)"
    " SELECT k, t, o, a, d, c, cur"
    " FROM unnest(%b::text[], %b::text[], %b::text[], %b::boolean[], %b::text[], %b::bigint[], %b::text[])"
    " WITH ORDINALITY AS v(k, t, o, a, d, c, cur, n) ORDER BY n"
    " ON CONFLICT (idempotency_key) DO NOTHING"
    " RETURNING idempotency_key, approved, operation_id, decline_code, amount_cents, currency"
)
# Raw, per batch: the first answers under the keys.
_LOOKUP = (
    "SELECT idempotency_key, approved, operation_id, decline_code, amount_cents, currency"
    " FROM sandbox_provider_operations WHERE idempotency_key = ANY(%b::text[])"
)
