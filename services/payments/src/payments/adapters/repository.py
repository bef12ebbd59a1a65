"""Loads (started if new, and locked) and saves of payments, each one statement for a batch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.adapters.orm import payments
from payments.domain.model import Payment, PaymentStatus

_FIELDS = [f.name for f in fields(Payment)]
_SAVED = [name for name in _FIELDS if name != "payment_id"]


class PaymentRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get_or_start_many(self, *, order_ids: Iterable[UUID]) -> dict[UUID, Payment]:
        """The orders' payments, locked; each created AWAITING if this is the first we hear of it.

        One upsert, one round trip: a new order's row is inserted, a known one is touched, and
        either way it is locked and returned. INSERT ... DO NOTHING and then SELECT ... FOR
        UPDATE take two; folded into one statement (a CTE) they would miss a row another
        transaction inserted after the statement began, which DO UPDATE waits for and returns.
        The touch costs a row version more than a lock; the round trip cost more.
        """
        ids = sorted(set(order_ids))  # in order-id order, so that racing batches never deadlock
        if not ids:
            return {}
        rows = await self._connection.execute(
            _START,
            [
                {
                    "order_id": order_id,
                    "payment_id": uuid4(),
                    "status": PaymentStatus.AWAITING.value,
                    "stock_reserved": False,
                }
                for order_id in ids
            ],
        )
        return {row["order_id"]: _payment(row) for row in rows.mappings()}

    async def save_many(self, payments: Iterable[Payment]) -> None:
        """Write the payments back, all with one statement."""
        rows = {p.order_id: p for p in payments}
        if not rows:
            return
        saved = list(rows.values())
        values: dict[str, Any] = {name: [getattr(p, name) for p in saved] for name in _SAVED}
        values["status"] = [p.status.value for p in saved]
        await self._connection.execute(_SAVE, values)


def _payment(row: Any) -> Payment:
    values = {name: row[name] for name in _FIELDS}
    values["status"] = PaymentStatus(values["status"])
    return Payment(**values)


# Built once: these run for every batch, and building a statement costs more CPU than running it.
# RETURNING makes SQLAlchemy send many rows as one multi-row INSERT ("insertmanyvalues").
_START = (
    insert(payments)
    .on_conflict_do_update(index_elements=["order_id"], set_={"updated_at": sa.func.now()})
    .returning(*(payments.c[name] for name in _FIELDS))
)

# Many rows' new values in one UPDATE, from one array per column (payment_id never changes).
_SAVE = sa.text(
    "UPDATE payments SET status = v.status, customer_id = v.customer_id,"
    " amount_cents = v.amount_cents, currency = v.currency, payment_token = v.payment_token,"
    " stock_reserved = v.stock_reserved, provider_charge_id = v.provider_charge_id,"
    " provider_refund_id = v.provider_refund_id, failure_reason = v.failure_reason,"
    " client_key = v.client_key, provider_key = v.provider_key, updated_at = now()"
    " FROM unnest(CAST(:order_id AS uuid[]), CAST(:status AS text[]), CAST(:customer_id AS uuid[]),"
    " CAST(:amount_cents AS bigint[]), CAST(:currency AS text[]), CAST(:payment_token AS text[]),"
    " CAST(:stock_reserved AS boolean[]), CAST(:provider_charge_id AS text[]),"
    " CAST(:provider_refund_id AS text[]), CAST(:failure_reason AS text[]),"
    " CAST(:client_key AS text[]), CAST(:provider_key AS text[]))"
    " AS v(order_id, status, customer_id, amount_cents, currency, payment_token, stock_reserved,"
    " provider_charge_id, provider_refund_id, failure_reason, client_key, provider_key)"
    " WHERE payments.order_id = v.order_id"
)
