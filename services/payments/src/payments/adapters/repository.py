"""Loads (started if new, and locked) and saves of payments, each one statement for a batch.

Both run for every batch (OrderPlaced, StockReserved, OrderCancelled), so they go straight to
psycopg on the unit of work's ``db``, in its transaction: SQLAlchemy Core's execution layer cost
more client CPU than the statements themselves (bench/results/dbclients).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any
from uuid import UUID, uuid4

import psycopg

from payments.domain.model import Payment, PaymentStatus

_FIELDS = [f.name for f in fields(Payment)]
_SAVED = [name for name in _FIELDS if name != "payment_id"]  # in the order of _SAVE's unnest


class PaymentRepository:
    def __init__(self, db: psycopg.AsyncConnection[Any]) -> None:
        self._db = db

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
        cursor = await self._db.execute(
            _START, (PaymentStatus.AWAITING.value, False, ids, [uuid4() for _ in ids])
        )
        return {row[0]: _payment(row) for row in await cursor.fetchall()}

    async def save_many(self, payments: Iterable[Payment]) -> None:
        """Write the payments back, all with one statement."""
        rows = {p.order_id: p for p in payments}
        if not rows:
            return
        saved = list(rows.values())
        values = {name: [getattr(p, name) for p in saved] for name in _SAVED}
        values["status"] = [p.status.value for p in saved]
        await self._db.execute(_SAVE, [values[name] for name in _SAVED])


def _payment(row: tuple[Any, ...]) -> Payment:
    """A payment from a row of _START's RETURNING (the columns in Payment's field order)."""
    order_id, payment_id, status, *rest = row
    return Payment(order_id, payment_id, PaymentStatus(status), *rest)


# Raw, per batch (why: the module's docstring), built once. Arrays go as %b, binary: psycopg
# writes a text array element by element in Python, several times slower.

# Raw, per batch: start (or touch) and lock the batch's payments, in the ids' (order-id) order.
_START = (
    "INSERT INTO payments (order_id, payment_id, status, stock_reserved)"
    " SELECT o, p, %s::text, %s::boolean FROM unnest(%b::uuid[], %b::uuid[]) WITH ORDINALITY AS v(o, p, n) ORDER BY n"
    " ON CONFLICT (order_id) DO UPDATE SET updated_at = now()"
    " RETURNING " + ", ".join(_FIELDS)
)
# Raw, per batch: many rows' new values in one UPDATE, one array per column (payment_id never
# changes).
_SAVE = (
    "UPDATE payments SET status = v.status, customer_id = v.customer_id,"
    " amount_cents = v.amount_cents, currency = v.currency, payment_token = v.payment_token,"
    " stock_reserved = v.stock_reserved, provider_charge_id = v.provider_charge_id,"
    " provider_refund_id = v.provider_refund_id, failure_reason = v.failure_reason,"
    " client_key = v.client_key, provider_key = v.provider_key, updated_at = now()"
    " FROM unnest(%b::uuid[], %b::text[], %b::uuid[], %b::bigint[], %b::text[], %b::text[],"
    " %b::boolean[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[])"
    " AS v(order_id, status, customer_id, amount_cents, currency, payment_token, stock_reserved,"
    " provider_charge_id, provider_refund_id, failure_reason, client_key, provider_key)"
    " WHERE payments.order_id = v.order_id"
)
