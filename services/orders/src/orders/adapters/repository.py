"""The Order aggregate, loaded whole (order, lines, history) and saved whole."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from emporium_events import tracing
from emporium_events.bus import Delivery
from orders.adapters.catalog import PricedProduct
from orders.adapters.orm import catalog_prices, idempotency_keys, order_history, order_lines, orders
from orders.domain.events import DomainEvent
from orders.domain.model import HistoryEntry, Line, Order, OrderStatus


class OrderRepository:
    """Loads orders row-locked, many at once, and remembers them for the transaction (a second
    load of an order returns the same object). Nothing is written until ``write``, which the
    unit of work calls before its commit: new orders with their lines and history in one
    statement each, changed orders in one UPDATE, their new history in one INSERT."""

    def __init__(self, connection: AsyncConnection) -> None:
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
            rows = (await self._connection.execute(self._locked, {"ids": missing})).mappings().all()
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
        """Write what this transaction added and changed (see the class)."""
        for order_id, trace_id in self._new.items():
            await self._connection.execute(self._insert, _insert_params(self._loaded[order_id], trace_id))
            self._loaded[order_id].new_history.clear()
        changed = [order for order in self.seen.values() if order.id not in self._new]
        self._new = {}
        if changed:
            await self._connection.execute(
                self._update,
                {
                    "ids": [o.id for o in changed],
                    "statuses": [o.status.value for o in changed],
                    "reasons": [o.cancel_reason for o in changed],
                    "updated": [o.updated_at for o in changed],
                },
            )
        history = [(o.id, h) for o in changed for h in o.new_history]
        if history:
            await self._connection.execute(
                self._append_history,
                [{"order_id": oid, "status": h.status, "note": h.note, "at": h.at} for oid, h in history],
            )
        for order in changed:
            order.new_history.clear()

    # Built once: constructing a statement and its cache key costs more than running it.
    _locked = (
        sa.select(
            orders,
            order_lines.c.line_no,
            order_lines.c.product_id,
            order_lines.c.sku,
            order_lines.c.name,
            order_lines.c.quantity,
            order_lines.c.unit_price_cents,
        )
        .join(order_lines, order_lines.c.order_id == orders.c.id)
        .where(orders.c.id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.Uuid))))
        .order_by(orders.c.id, order_lines.c.line_no)
        .with_for_update(of=orders)
    )
    _history = (
        sa.select(order_history)
        .where(order_history.c.order_id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.Uuid))))
        .order_by(order_history.c.id)
    )
    # A new order, its lines and its first history in one statement (one round trip).
    _insert = sa.text(
        "WITH o AS (INSERT INTO orders (id, customer_id, customer_email, status, total_cents, currency,"
        " cancel_reason, created_at, updated_at, deadline_at, idempotency_key, trace_id)"
        " VALUES (:id, :customer_id, :customer_email, :status, :total_cents, :currency, :cancel_reason,"
        " :created_at, :updated_at, :deadline_at, :idempotency_key, :trace_id)),"
        " l AS (INSERT INTO order_lines (order_id, line_no, product_id, sku, name, quantity, unit_price_cents)"
        " SELECT :id, n, p, s, nm, q, u FROM unnest(CAST(:line_nos AS integer[]), CAST(:products AS uuid[]),"
        " CAST(:skus AS text[]), CAST(:names AS text[]), CAST(:quantities AS integer[]),"
        " CAST(:prices AS bigint[])) AS t(n, p, s, nm, q, u))"
        " INSERT INTO order_history (order_id, status, note, at)"
        " SELECT :id, st, nt, at FROM unnest(CAST(:h_statuses AS text[]), CAST(:h_notes AS text[]),"
        " CAST(:h_ats AS timestamptz[])) AS h(st, nt, at)"
    )
    _update = sa.text(
        "UPDATE orders SET status = v.status, cancel_reason = v.reason, updated_at = v.updated"
        " FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:reasons AS text[]),"
        " CAST(:updated AS timestamptz[])) AS v(id, status, reason, updated) WHERE orders.id = v.id"
    )
    # RETURNING makes SQLAlchemy send many rows as one multi-row INSERT ("insertmanyvalues").
    _append_history = sa.insert(order_history).returning(order_history.c.id)


def _insert_params(order: Order, trace_id: str | None) -> dict[str, Any]:
    return {
        "id": order.id,
        "customer_id": order.customer_id,
        "customer_email": order.customer_email,
        "status": order.status.value,
        "total_cents": order.total_cents,
        "currency": order.currency,
        "cancel_reason": order.cancel_reason,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "deadline_at": order.deadline_at,
        "idempotency_key": order.idempotency_key,
        "trace_id": trace_id,
        "line_nos": list(range(1, len(order.lines) + 1)),
        "products": [li.product_id for li in order.lines],
        "skus": [li.sku for li in order.lines],
        "names": [li.name for li in order.lines],
        "quantities": [li.quantity for li in order.lines],
        "prices": [li.unit_price_cents for li in order.lines],
        "h_statuses": [h.status for h in order.new_history],
        "h_notes": [h.note for h in order.new_history],
        "h_ats": [h.at for h in order.new_history],
    }


def _orders_from(rows: Sequence[sa.RowMapping]) -> list[Order]:
    """Orders from the rows of ``_locked`` (one row per line, ordered by order)."""
    out: list[Order] = []
    for row in rows:
        if not out or out[-1].id != row["id"]:
            out.append(
                Order(
                    id=row["id"],
                    customer_id=row["customer_id"],
                    customer_email=row["customer_email"],
                    lines=[],
                    currency=row["currency"],
                    status=OrderStatus(row["status"]),
                    created_at=row["created_at"],
                    updated_at=row["updated_at"],
                    cancel_reason=row["cancel_reason"],
                    deadline_at=row["deadline_at"],
                    idempotency_key=row["idempotency_key"],
                )
            )
        out[-1].lines.append(
            Line(
                product_id=row["product_id"],
                sku=row["sku"],
                name=row["name"],
                quantity=row["quantity"],
                unit_price_cents=row["unit_price_cents"],
            )
        )
    return out


class IdempotencyKeys:
    """Stored answers to requests made with an ``Idempotency-Key``, per customer.

    The key row is written in the same transaction as the order it answers for, so a retry
    either finds the whole first answer or nothing at all.
    """

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def find(self, *, customer_id: UUID, key: str) -> sa.Row[*tuple[Any, ...]] | None:
        return (await self._connection.execute(self._find, {"customer_id": customer_id, "key": key})).first()

    async def claim(self, *, customer_id: UUID, key: str, request_hash: str) -> bool:
        """Reserve the key for this transaction; False if another request holds or held it.

        A concurrent holder makes this wait until it commits (then False) or rolls back (then True).
        """
        result = await self._connection.execute(
            self._claim, {"customer_id": customer_id, "key": key, "request_hash": request_hash}
        )
        return result.first() is not None

    async def record(
        self, *, customer_id: UUID, key: str, status_code: int, response: dict[str, Any]
    ) -> None:
        await self._connection.execute(
            self._record,
            {
                "the_customer": customer_id,
                "the_key": key,
                "new_status": status_code,
                "new_response": response,
            },
        )

    # Built once (see OrderRepository).
    _find = sa.select(
        idempotency_keys.c.request_hash, idempotency_keys.c.status_code, idempotency_keys.c.response
    ).where(
        idempotency_keys.c.customer_id == sa.bindparam("customer_id"),
        idempotency_keys.c.key == sa.bindparam("key"),
    )
    _claim = (
        insert(idempotency_keys)
        .values(status_code=0, response=sa.text("'{}'::jsonb"))
        .on_conflict_do_nothing()
        .returning(idempotency_keys.c.key)
    )
    _record = (  # bind names differ from the columns': SQLAlchemy keeps those for SET
        sa.update(idempotency_keys)
        .where(
            idempotency_keys.c.customer_id == sa.bindparam("the_customer"),
            idempotency_keys.c.key == sa.bindparam("the_key"),
        )
        .values(status_code=sa.bindparam("new_status"), response=sa.bindparam("new_response"))
    )

    async def purge(self, *, older_than: datetime) -> int:
        result = await self._connection.execute(
            sa.delete(idempotency_keys).where(idempotency_keys.c.created_at < older_than)
        )
        return cast(sa.CursorResult[Any], result).rowcount or 0


class CatalogPrices:
    """Orders' copy of the catalog's prices, kept current from the catalog's events.

    One product's events share a partition, so they arrive in order and the last one wins.
    """

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, product_ids: list[UUID]) -> dict[UUID, PricedProduct]:
        rows = await self._connection.execute(self._select, {"ids": product_ids})
        return {
            r.product_id: PricedProduct(
                product_id=r.product_id,
                sku=r.sku,
                name=r.name,
                price_cents=r.price_cents,
                currency=r.currency,
            )
            for r in rows
        }

    async def put(self, product: PricedProduct) -> None:
        await self._connection.execute(
            self._upsert,
            {
                "product_id": product.product_id,
                "sku": product.sku,
                "name": product.name,
                "price_cents": product.price_cents,
                "currency": product.currency,
            },
        )

    _select = sa.select(catalog_prices).where(
        catalog_prices.c.product_id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.Uuid)))
    )
    _insert = insert(catalog_prices).values(updated_at=sa.func.now())
    _upsert = _insert.on_conflict_do_update(
        index_elements=["product_id"],
        set_={
            "sku": _insert.excluded.sku,
            "name": _insert.excluded.name,
            "price_cents": _insert.excluded.price_cents,
            "currency": _insert.excluded.currency,
            "updated_at": sa.func.now(),
        },
    )
