"""The payment-provider port and the sandbox that behaves like a card processor's test mode."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments.adapters.orm import sandbox_provider_operations as ops


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
    second statement, to read their first answers."""

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
        async with self._sessions()() as session:
            connection = await session.connection(execution_options=_AUTOCOMMIT)
            rows = (await connection.execute(_LOOKUP, {"keys": sorted(set(idempotency_keys))})).all()
        return {row.idempotency_key: _result(row) for row in rows}

    async def _once(self, operations: list[dict[str, Any]]) -> dict[str, ProviderResult]:
        """Record each operation unless its key is known; every key's first answer."""
        if not operations:
            return {}
        # In key order, so that two batches racing on the same keys wait rather than deadlock.
        rows = sorted({op["idempotency_key"]: op for op in operations}.values(), key=_by_key)
        async with self._sessions()() as session:
            connection = await session.connection(execution_options=_AUTOCOMMIT)
            made = {r.idempotency_key: _result(r) for r in await connection.execute(_RECORD, rows)}
            known = [r["idempotency_key"] for r in rows if r["idempotency_key"] not in made]
            if known:  # answered before (a redelivery, or a race another call won): the first answer
                for r in await connection.execute(_LOOKUP, {"keys": known}):
                    made[r.idempotency_key] = _result(r)
        return made


def _operation(key: str, kind: str, decline: str | None, amount_cents: int, currency: str) -> dict[str, Any]:
    prefix = "ch" if kind == "charge" else "re"
    return {
        "idempotency_key": key,
        "kind": kind,
        "operation_id": f"{prefix}_{uuid4().hex[:24]}",
        "approved": decline is None,
        "decline_code": decline,
        "amount_cents": amount_cents,
        "currency": currency,
    }


def _by_key(operation: dict[str, Any]) -> str:
    return str(operation["idempotency_key"])


def _result(row: Any) -> ProviderResult:
    return ProviderResult(
        approved=row.approved,
        operation_id=row.operation_id,
        decline_code=row.decline_code,
        amount_cents=row.amount_cents,
        currency=row.currency,
    )


_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}
# RETURNING makes SQLAlchemy send the rows as one multi-row INSERT ("insertmanyvalues"); a key
# already in the ledger returns nothing (DO NOTHING waits for a racing insert to commit first, so
# the following lookup, a statement of its own, sees it).
_RECORD = insert(ops).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(ops)
_LOOKUP = sa.select(ops).where(
    ops.c.idempotency_key == sa.any_(sa.bindparam("keys", type_=sa.ARRAY(sa.Text)))
)
