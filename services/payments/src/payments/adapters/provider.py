"""The payment-provider port and the sandbox that behaves like a card processor's test mode."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
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


class PaymentProvider(Protocol):
    async def charge(
        self, *, idempotency_key: str, token: str, amount_cents: int, currency: str
    ) -> ProviderResult: ...

    async def refund(
        self, *, idempotency_key: str, charge_id: str, amount_cents: int, currency: str
    ) -> ProviderResult: ...

    async def lookup(self, *, idempotency_key: str) -> ProviderResult | None:
        """What the provider did under this key, if anything."""
        ...


# Test-mode card tokens, as a card processor's sandbox documents them.
DECLINES = {
    "tok_chargeDeclined": "card_declined",
    "tok_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "tok_chargeDeclinedExpiredCard": "expired_card",
}
APPROVED = {"tok_visa", "tok_mastercard", "tok_amex"}


class SandboxProvider:
    """Keeps its own ledger in its own transactions, as a remote provider would: a charge it has
    made stays made even if our transaction then rolls back, and the same idempotency key always
    returns the first answer."""

    def __init__(self, sessions: Callable[[], async_sessionmaker[AsyncSession]]) -> None:
        self._sessions = sessions  # resolved per call: the engine exists only once the service runs

    async def charge(
        self, *, idempotency_key: str, token: str, amount_cents: int, currency: str
    ) -> ProviderResult:
        if token in APPROVED:
            decline = None
        else:
            decline = DECLINES.get(token, "invalid_token")
        return await self._once(idempotency_key, "charge", decline, amount_cents, currency)

    async def refund(
        self, *, idempotency_key: str, charge_id: str, amount_cents: int, currency: str
    ) -> ProviderResult:
        return await self._once(idempotency_key, "refund", None, amount_cents, currency)

    async def lookup(self, *, idempotency_key: str) -> ProviderResult | None:
        async with self._sessions()() as session:
            row = (
                await session.execute(sa.select(ops).where(ops.c.idempotency_key == idempotency_key))
            ).first()
        if row is None:
            return None
        return ProviderResult(
            approved=row.approved,
            operation_id=row.operation_id,
            decline_code=row.decline_code,
            amount_cents=row.amount_cents,
            currency=row.currency,
        )

    async def _once(
        self, key: str, kind: str, decline: str | None, amount_cents: int, currency: str
    ) -> ProviderResult:
        prefix = "ch" if kind == "charge" else "re"
        async with self._sessions()() as session, session.begin():
            await session.execute(
                insert(ops)
                .values(
                    idempotency_key=key,
                    kind=kind,
                    operation_id=f"{prefix}_{uuid4().hex[:24]}",
                    approved=decline is None,
                    decline_code=decline,
                    amount_cents=amount_cents,
                    currency=currency,
                )
                .on_conflict_do_nothing()
            )
            row = (await session.execute(sa.select(ops).where(ops.c.idempotency_key == key))).one()
        return ProviderResult(
            approved=row.approved,
            operation_id=row.operation_id,
            decline_code=row.decline_code,
            amount_cents=row.amount_cents,
            currency=row.currency,
        )
