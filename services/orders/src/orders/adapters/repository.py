"""The Order aggregate, loaded whole (order, lines, history) and saved whole; the stored answers
to idempotent requests; orders' copy of the catalog's prices.

The statements that run for every order (the POST's and the saga replies') go straight to psycopg
on the unit of work's ``db``, in the same transaction as its SQLAlchemy ``connection``: SQLAlchemy
Core cost ~95 µs of client CPU per execute over raw psycopg, and the POST's transaction ~3.9 ms
against ~0.85 ms on psycopg (bench/results/dbclients/report.md). They are SQL text built once,
with psycopg's ``%s`` placeholders; rows come back as tuples. The cold paths (the deadline sweep's
query, a cancellation's history, the key purge) stay on SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast
from uuid import UUID

import psycopg
import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from emporium_events import tracing
from emporium_events.bus import Delivery
from orders.adapters.catalog import PricedProduct
from orders.adapters.orm import idempotency_keys, order_history, orders
from orders.domain.events import DomainEvent
from orders.domain.model import HistoryEntry, Line, Order, OrderStatus

# Raw: every saga reply batch loads its orders with it. Locked in id order (the rows pass the lock
# sorted), so two transactions wanting the same orders never deadlock.
_LOCK_ORDERS = (
    "SELECT o.id, o.customer_id, o.customer_email, o.status, o.currency, o.cancel_reason,"
    " o.created_at, o.updated_at, o.deadline_at, o.idempotency_key,"
    " l.product_id, l.sku, l.name, l.quantity, l.unit_price_cents"
    " FROM orders o JOIN order_lines l ON l.order_id = o.id"
    " WHERE o.id = ANY(%s::uuid[]) ORDER BY o.id, l.line_no FOR UPDATE OF o"
)
# Raw: one per order placed. The order, its lines and its first history in one statement.
_INSERT_ORDER = (
    "WITH o AS (INSERT INTO orders (id, customer_id, customer_email, status, total_cents, currency,"
    " cancel_reason, created_at, updated_at, deadline_at, idempotency_key, trace_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id),"
    " l AS (INSERT INTO order_lines (order_id, line_no, product_id, sku, name, quantity, unit_price_cents)"
    " SELECT o.id, n, p, s, nm, q, u FROM o, unnest(%s::integer[], %s::uuid[], %s::text[], %s::text[],"
    " %s::integer[], %s::bigint[]) AS t(n, p, s, nm, q, u))"
    " INSERT INTO order_history (order_id, status, note, at)"
    " SELECT o.id, st, nt, at FROM o, unnest(%s::text[], %s::text[], %s::timestamptz[]) AS h(st, nt, at)"
)
# Raw: every saga reply batch that moves orders; all of them in one statement.
_UPDATE_ORDERS = (
    "UPDATE orders SET status = v.status, cancel_reason = v.reason, updated_at = v.updated"
    " FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::timestamptz[]) AS v(id, status, reason, updated)"
    " WHERE orders.id = v.id"
)
# Raw: beside _UPDATE_ORDERS, the batch's new history in one statement, ids given in the order
# the entries were recorded (WITH ORDINALITY), which is the order a later read returns them in.
_APPEND_HISTORY = (
    "INSERT INTO order_history (order_id, status, note, at)"
    " SELECT o, s, nt, at FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::timestamptz[])"
    " WITH ORDINALITY AS v(o, s, nt, at, n) ORDER BY n"
)
# Raw: the first statement of every POST made with an Idempotency-Key.
_CLAIM_KEY = (
    "INSERT INTO idempotency_keys (customer_id, key, request_hash, status_code, response)"
    " VALUES (%s, %s, %s, 0, '{}'::jsonb) ON CONFLICT DO NOTHING RETURNING key"
)
# Raw: on the same path as _CLAIM_KEY (read when a key was claimed before).
_FIND_KEY = (
    "SELECT request_hash, status_code, response FROM idempotency_keys WHERE customer_id = %s AND key = %s"
)
# Raw: the answer to every POST made with an Idempotency-Key.
_RECORD_KEY = (
    "UPDATE idempotency_keys SET status_code = %s, response = %s WHERE customer_id = %s AND key = %s"
)
# Raw: every POST prices its lines with it.
_PRICES = (
    "SELECT product_id, sku, name, price_cents, currency FROM catalog_prices"
    " WHERE product_id = ANY(%s::uuid[])"
)
# Raw like _PRICES beside it (one connection for the class): one per ProductCreated/ProductUpdated.
_PUT_PRICE = (
    "INSERT INTO catalog_prices (product_id, sku, name, price_cents, currency, updated_at)"
    " VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (product_id) DO UPDATE SET sku = excluded.sku,"
    " name = excluded.name, price_cents = excluded.price_cents, currency = excluded.currency,"
    " updated_at = now()"
)


class OrderRepository:
    """Loads orders row-locked, many at once, and remembers them for the transaction (a second
    load of an order returns the same object). Nothing is written until ``write``, which the
    unit of work calls before its commit: new orders with their lines and history in one
    statement each, changed orders in one UPDATE, their new history in one INSERT.

    ``db`` runs those (see the module); ``connection``, SQLAlchemy in the same transaction, the
    cold reads: the deadline sweep's query and the history a cancellation answers with.
    """

    def __init__(self, db: psycopg.AsyncConnection[Any], *, connection: AsyncConnection) -> None:
        self._db = db
        self._connection = connection
        self._loaded: dict[UUID, Order] = {}
        self._new: dict[UUID, str | None] = {}  # new order -> its trace id
        self.seen: dict[UUID, Order] = {}  # added or saved in this transaction
        # What the orders recorded, each with the event that caused it (None: a command), in order.
        self.events: list[tuple[Order, DomainEvent, Delivery[Any] | None]] = []

    def add(self, order: Order, *, cause: Delivery[Any] | None = None) -> None:
        self._loaded[order.id] = order
        self._new[order.id] = tracing.current_trace_id()
        self.save(order, cause=cause)

    def save(self, order: Order, *, cause: Delivery[Any] | None = None) -> None:
        """Mark ``order`` changed; ``cause`` is the event that changed it (None for a command)."""
        self.seen[order.id] = order
        self.events.extend((order, event, cause) for event in order.events)
        order.events.clear()

    async def get_for_update(self, *, order_id: UUID, with_history: bool = False) -> Order | None:
        return (await self.get_many_for_update(order_ids=[order_id], with_history=with_history)).get(order_id)

    async def get_many_for_update(
        self, *, order_ids: Iterable[UUID], with_history: bool = False
    ) -> dict[UUID, Order]:
        """The orders that exist and their lines, row-locked (in id order), in one statement.
        The history (append-only, never needed to decide a transition) is read only
        ``with_history``; otherwise ``order.history`` holds just what this transaction adds."""
        wanted = list(dict.fromkeys(order_ids))
        missing = sorted(o for o in wanted if o not in self._loaded)
        if missing:
            rows = await (await self._db.execute(_LOCK_ORDERS, (missing,))).fetchall()
            for order in _orders_from(rows):
                self._loaded[order.id] = order
            if with_history and rows:
                await self._read_history([o for o in missing if o in self._loaded])
        return {o: self._loaded[o] for o in wanted if o in self._loaded}

    async def _read_history(self, order_ids: list[UUID]) -> None:
        for h in (await self._connection.execute(self._history, {"ids": order_ids})).mappings():
            self._loaded[h["order_id"]].history.append(
                HistoryEntry(status=h["status"], at=h["at"], note=h["note"])
            )

    async def overdue_ids(self, *, now: datetime, limit: int) -> list[UUID]:
        """Orders whose saga outlived its deadline, skipping any another replica is handling."""
        rows = await self._connection.execute(
            sa.select(orders.c.id)
            .where(
                orders.c.status.not_in([OrderStatus.CONFIRMED.value, OrderStatus.CANCELLED.value]),
                orders.c.deadline_at <= now,
            )
            .order_by(orders.c.deadline_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(rows.scalars())

    async def write(self) -> None:
        """Write what this transaction added and changed (see the class). No statement reads
        another's result, so the unit of work can send them all in one pipeline."""
        for order_id, trace_id in self._new.items():
            await self._db.execute(_INSERT_ORDER, _insert_params(self._loaded[order_id], trace_id))
            self._loaded[order_id].new_history.clear()
        changed = [order for order in self.seen.values() if order.id not in self._new]
        self._new = {}
        if changed:
            await self._db.execute(
                _UPDATE_ORDERS,
                (
                    [o.id for o in changed],
                    [o.status.value for o in changed],
                    [o.cancel_reason for o in changed],
                    [o.updated_at for o in changed],
                ),
            )
        history = [(o.id, h) for o in changed for h in o.new_history]
        if history:
            await self._db.execute(
                _APPEND_HISTORY,
                (
                    [oid for oid, _ in history],
                    [h.status for _, h in history],
                    [h.note for _, h in history],
                    [h.at for _, h in history],
                ),
            )
        for order in changed:
            order.new_history.clear()

    # Built once: constructing a statement and its cache key costs more than running it.
    _history = (
        sa.select(order_history)
        .where(order_history.c.order_id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.Uuid))))
        .order_by(order_history.c.id)
    )


def _insert_params(order: Order, trace_id: str | None) -> tuple[Any, ...]:
    """The parameters of ``_INSERT_ORDER``, in its order: the order, its lines, its history."""
    lines, history = order.lines, order.new_history
    return (
        order.id,
        order.customer_id,
        order.customer_email,
        order.status.value,
        order.total_cents,
        order.currency,
        order.cancel_reason,
        order.created_at,
        order.updated_at,
        order.deadline_at,
        order.idempotency_key,
        trace_id,
        list(range(1, len(lines) + 1)),
        [li.product_id for li in lines],
        [li.sku for li in lines],
        [li.name for li in lines],
        [li.quantity for li in lines],
        [li.unit_price_cents for li in lines],
        [h.status for h in history],
        [h.note for h in history],
        [h.at for h in history],
    )


def _orders_from(rows: Sequence[tuple[Any, ...]]) -> list[Order]:
    """Orders from the rows of ``_LOCK_ORDERS`` (one row per line, ordered by order)."""
    out: list[Order] = []
    for (
        order_id,
        customer_id,
        customer_email,
        status,
        currency,
        cancel_reason,
        created_at,
        updated_at,
        deadline_at,
        idempotency_key,
        product_id,
        sku,
        name,
        quantity,
        unit_price_cents,
    ) in rows:
        if not out or out[-1].id != order_id:
            out.append(
                Order(
                    id=order_id,
                    customer_id=customer_id,
                    customer_email=customer_email,
                    lines=[],
                    currency=currency,
                    status=OrderStatus(status),
                    created_at=created_at,
                    updated_at=updated_at,
                    cancel_reason=cancel_reason,
                    deadline_at=deadline_at,
                    idempotency_key=idempotency_key,
                )
            )
        out[-1].lines.append(
            Line(
                product_id=product_id,
                sku=sku,
                name=name,
                quantity=quantity,
                unit_price_cents=unit_price_cents,
            )
        )
    return out


class StoredAnswer(NamedTuple):
    """The stored answer to a request made with an ``Idempotency-Key``."""

    request_hash: str
    status_code: int
    response: dict[str, Any]


class IdempotencyKeys:
    """Stored answers to requests made with an ``Idempotency-Key``, per customer.

    The key row is written in the same transaction as the order it answers for, so a retry
    either finds the whole first answer or nothing at all. ``claim`` and ``find`` run at once;
    ``record`` keeps the answer until ``write``, which the unit of work calls before its commit,
    with the order's own writes (one round trip for all of them).
    """

    def __init__(self, db: psycopg.AsyncConnection[Any], *, connection: AsyncConnection) -> None:
        self._db = db
        self._connection = connection  # the purge, a periodic job's, stays on SQLAlchemy
        self._answers: list[tuple[Any, ...]] = []  # _RECORD_KEY's parameters, one per answer

    async def find(self, *, customer_id: UUID, key: str) -> StoredAnswer | None:
        row = await (await self._db.execute(_FIND_KEY, (customer_id, key))).fetchone()
        return None if row is None else StoredAnswer(*row)

    async def claim(self, *, customer_id: UUID, key: str, request_hash: str) -> bool:
        """Reserve the key for this transaction; False if another request holds or held it.

        A concurrent holder makes this wait until it commits (then False) or rolls back (then True).
        """
        cursor = await self._db.execute(_CLAIM_KEY, (customer_id, key, request_hash))
        return await cursor.fetchone() is not None

    async def record(
        self, *, customer_id: UUID, key: str, status_code: int, response: dict[str, Any]
    ) -> None:
        """Store ``response`` as the key's answer, with this transaction's other writes."""
        self._answers.append((status_code, Jsonb(response), customer_id, key))

    @property
    def pending(self) -> bool:
        """Answers recorded and not yet written."""
        return bool(self._answers)

    async def write(self) -> None:
        answers, self._answers = self._answers, []
        for answer in answers:  # one per command, and a transaction runs one
            await self._db.execute(_RECORD_KEY, answer)

    async def purge(self, *, older_than: datetime) -> int:
        result = await self._connection.execute(
            sa.delete(idempotency_keys).where(idempotency_keys.c.created_at < older_than)
        )
        return cast(sa.CursorResult[Any], result).rowcount or 0


class CatalogPrices:
    """Orders' copy of the catalog's prices, kept current from the catalog's events.

    One product's events share a partition, so they arrive in order and the last one wins.
    """

    def __init__(self, db: psycopg.AsyncConnection[Any]) -> None:
        self._db = db

    async def get(self, product_ids: list[UUID]) -> dict[UUID, PricedProduct]:
        rows = await (await self._db.execute(_PRICES, (product_ids,))).fetchall()
        return {
            product_id: PricedProduct(
                product_id=product_id, sku=sku, name=name, price_cents=price_cents, currency=currency
            )
            for product_id, sku, name, price_cents, currency in rows
        }

    async def put(self, product: PricedProduct) -> None:
        await self._db.execute(
            _PUT_PRICE,
            (product.product_id, product.sku, product.name, product.price_cents, product.currency),
        )
