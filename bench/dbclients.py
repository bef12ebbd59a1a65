"""Database clients on the hot statements (issue 11): SQLAlchemy ORM vs SQLAlchemy Core vs raw
psycopg 3 (plain and in pipeline mode) vs asyncpg, each running the same transactions against
one throwaway PostgreSQL with durable commits.

    uv run --frozen python bench/dbclients.py [--quick] [--out bench/results/dbclients]

Writes ``results.json`` and ``report.md`` into ``--out``.

The transactions (the statements come from the services' own modules wherever they exist):

- ``inbox_claim``: ``emporium_events.inbox.claim`` of N events, as its own transaction;
- ``outbox_append``: ``emporium_events.outbox.append`` of N rows (JSONB envelope + trace headers);
- ``relay_claim``: the relay's claim of N unsent rows (its own statement, taken from
  ``OutboxRelay``), on a held connection as the relay does;
- ``reserve_each``: inventory's OrderPlaced handler as today for a batch of N events in one
  transaction (the consumer's shared transaction): one inbox claim, then per event the
  reservation lock, the stock lock, one update per stock row and the reservation upsert, then
  one outbox append and the commit (``StockRepository``/``ReservationRepository``);
- ``reserve_set``: the same work set-based: one statement per table for the whole batch
  (``= ANY(...)`` locks, ``UPDATE ... FROM unnest(...)``, ``INSERT ... SELECT FROM unnest(...)``);
- ``place_order``: the POST's transaction (idempotency claim, price lookup, order, lines,
  history, idempotency record, outbox row) with ``IdempotencyKeys``/``CatalogPrices``/
  ``OrderRepository``; one order per transaction, as the POST is one request.

The clients:

- ``sa_session``: SQLAlchemy Core through an ``AsyncSession`` from the services' own
  ``make_engine``/``make_session_factory``, opened and closed around each transaction the way
  ``UnitOfWork`` does (pool checkout and return included); async psycopg underneath;
- ``sa_conn``: the same statements on one held ``AsyncConnection`` (no session, no pool checkout);
- ``sa_session on asyncpg``: today's code unchanged on SQLAlchemy's asyncpg dialect (a URL swap);
- ``sa_orm``: mapped classes on the same tables, ``session.add``/``get`` and a flush (only where
  the ORM is a natural fit: the order insert and the per-event reservation);
- ``psycopg``: raw psycopg 3 ``AsyncConnection`` (autocommit off via ``transaction()``), one
  round trip per statement; multi-row writes as one ``unnest`` statement unless named otherwise;
- ``psycopg_pipeline``: the same statements in pipeline mode, waiting only where a result is
  needed to go on (BEGIN and the reads in one flight, the writes and COMMIT in the next);
- ``asyncpg``: asyncpg 0.3x, one round trip per statement; ``executemany`` and ``copy`` where fair.

Method. Inputs (envelopes, JSON bodies, domain objects) are built before the timed region, so
the figures are the database client's work plus the small domain logic that every client runs
alike. Each case is warmed up, then run ``--runs`` times for ``tx`` transactions, the cases
interleaved round by round so that the other engineers' load on the two cores falls on all of
them alike. Per transaction: client CPU (``time.process_time``), wall time, and the server
backend's CPU (utime+stime of its process, summed over all runs). Round trips and statements are
counted in a separate pass through a small TCP proxy that parses the PostgreSQL protocol: a
round trip is a flight of client messages sent after every earlier Sync/Query was answered
(ReadyForQuery) or after the answer to a Flush — the moments the client waits for the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import os
import platform
import random
import re
import shutil
import statistics
import struct
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import psycopg
import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, relationship

from emporium_devstack.ports import free_port
from emporium_devstack.postgres import PostgresCluster
from emporium_events import inbox, outbox
from emporium_events.contracts import OrderLine, OrderPlaced, StockLine, StockReserved
from emporium_events.envelope import Envelope
from emporium_events.relay import OutboxRelay
from emporium_events.tables import outbox as outbox_table
from emporium_kit.db import make_engine, make_session_factory
from emporium_kit.migrations import folder, upgrade
from inventory.adapters.orm import reservations, stock
from inventory.adapters.repository import ReservationRepository, StockRepository
from inventory.domain.model import Reservation, ReservationStatus, StockItem, reserve_all
from orders.adapters.orm import catalog_prices, idempotency_keys, order_history, order_lines, orders
from orders.adapters.repository import CatalogPrices, IdempotencyKeys, OrderRepository
from orders.domain.model import Line, Order

ROOT = Path(__file__).resolve().parents[1]
PRODUCTS = 2000
LINES_PER_ORDER = 2
CONSUMER = "inventory"
TRACE = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
PASSWORD = "bench-password"


# ------------------------------------------------------------------------------ raw SQL
# One text per statement for both raw drivers: written with $n, turned into %s for psycopg,
# or %b (binary) for an array: psycopg quotes a text-format array element by element in Python
# (a 50-element jsonb[] took 1.8 ms to dump as text, 0.22 ms as binary).


@functools.cache  # not redone on every execute
def _pg(sql: str) -> str:
    return re.sub(r"\$\d+", "%s", re.sub(r"\$\d+(?=::\w+\[\])", "%b", sql))


CLAIM = """INSERT INTO inbox (consumer, event_id, event_type)
SELECT $1, e, t FROM unnest($2::uuid[], $3::text[]) AS u(e, t)
ON CONFLICT DO NOTHING RETURNING event_id"""
APPEND = """INSERT INTO outbox (event_id, topic, key, event_type, envelope, trace_headers, created_at)
SELECT e, tp, k, et, env, th, clock_timestamp()
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[]) AS u(e, tp, k, et, env, th)"""
APPEND_ONE = """INSERT INTO outbox (event_id, topic, key, event_type, envelope, trace_headers, created_at)
VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp())"""
RELAY_CLAIM = """UPDATE outbox SET sent_at=clock_timestamp() WHERE outbox.id IN
(SELECT outbox.id FROM outbox WHERE outbox.sent_at IS NULL ORDER BY outbox.id LIMIT $1 FOR UPDATE)
RETURNING outbox.id, outbox.topic, outbox.key, outbox.envelope, outbox.trace_headers"""
LOCK_RESERVATION = """SELECT order_id, status, lines, reason, expires_at, created_at, updated_at
FROM reservations WHERE order_id = $1 FOR UPDATE"""
LOCK_STOCK = """SELECT product_id, sku, on_hand, reserved FROM stock
WHERE product_id = ANY($1::uuid[]) ORDER BY product_id::text FOR UPDATE"""
SAVE_STOCK = "UPDATE stock SET on_hand=$1, reserved=$2, updated_at=now() WHERE product_id = $3"
SAVE_RESERVATION = """INSERT INTO reservations (order_id, status, lines, reason, expires_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, now(), now())
ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, lines = excluded.lines,
reason = excluded.reason, expires_at = excluded.expires_at, updated_at = now()"""
LOCK_RESERVATIONS = """SELECT order_id, status, lines, reason, expires_at FROM reservations
WHERE order_id = ANY($1::uuid[]) FOR UPDATE"""
SAVE_STOCKS = """UPDATE stock SET on_hand = v.on_hand, reserved = v.reserved, updated_at = now()
FROM unnest($1::uuid[], $2::int[], $3::int[]) AS v(product_id, on_hand, reserved)
WHERE stock.product_id = v.product_id"""
SAVE_RESERVATIONS = """INSERT INTO reservations (order_id, status, lines, reason, expires_at, created_at, updated_at)
SELECT o, s, l, r, e, now(), now()
FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::timestamptz[]) AS u(o, s, l, r, e)
ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, lines = excluded.lines,
reason = excluded.reason, expires_at = excluded.expires_at, updated_at = now()"""
CLAIM_KEY = """INSERT INTO idempotency_keys (customer_id, key, request_hash, status_code, response)
VALUES ($1, $2, $3, 0, '{}') ON CONFLICT DO NOTHING RETURNING key"""
PRICES = """SELECT product_id, sku, name, price_cents, currency, updated_at FROM catalog_prices
WHERE product_id = ANY($1::uuid[])"""
INSERT_ORDER = """INSERT INTO orders (id, customer_id, customer_email, status, total_cents, currency,
cancel_reason, created_at, updated_at, deadline_at, idempotency_key, trace_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"""
INSERT_LINES = """INSERT INTO order_lines (order_id, line_no, product_id, sku, name, quantity, unit_price_cents)
SELECT $1, * FROM unnest($2::int[], $3::uuid[], $4::text[], $5::text[], $6::int[], $7::bigint[])"""
INSERT_HISTORY = "INSERT INTO order_history (order_id, status, note, at) VALUES ($1, $2, $3, $4)"
RECORD_KEY = "UPDATE idempotency_keys SET status_code=$1, response=$2 WHERE customer_id = $3 AND key = $4"

# ------------------------------------------------------------------------------ SQLAlchemy Core, set-based
# How a set-based inventory repository would write them in Core (built once, like the others).


def _array(name: str, item: Any) -> Any:
    return sa.cast(sa.bindparam(name, type_=ARRAY(item)), ARRAY(item))


_SA_LOCK_RESERVATIONS = (
    sa.select(reservations.c.order_id)
    .where(reservations.c.order_id == sa.any_(_array("ids", sa.Uuid)))
    .with_for_update()
)
_SA_LOCK_STOCKS = (
    sa.select(stock.c.product_id, stock.c.sku, stock.c.on_hand, stock.c.reserved)
    .where(stock.c.product_id == sa.any_(_array("ids", sa.Uuid)))
    .order_by(sa.cast(stock.c.product_id, sa.Text))
    .with_for_update()
)
_v = (
    sa.func.unnest(_array("ids", sa.Uuid), _array("on_hand", sa.Integer), _array("reserved", sa.Integer))
    .table_valued("product_id", "on_hand", "reserved")
    .render_derived(name="v")
)
_SA_SAVE_STOCKS = (
    sa.update(stock)
    .where(stock.c.product_id == _v.c.product_id)
    .values(on_hand=_v.c.on_hand, reserved=_v.c.reserved, updated_at=sa.func.now())
)
_u = (
    sa.func.unnest(
        _array("ids", sa.Uuid),
        _array("status", sa.Text),
        _array("lines", JSONB),
        _array("reason", sa.Text),
        _array("expires_at", sa.DateTime(timezone=True)),
    )
    .table_valued("order_id", "status", "lines", "reason", "expires_at")
    .render_derived(name="u")
)
_sa_insert_reservations = insert(reservations).from_select(
    ["order_id", "status", "lines", "reason", "expires_at", "created_at", "updated_at"],
    sa.select(
        _u.c.order_id, _u.c.status, _u.c.lines, _u.c.reason, _u.c.expires_at, sa.func.now(), sa.func.now()
    ),
)
_SA_SAVE_RESERVATIONS = _sa_insert_reservations.on_conflict_do_update(
    index_elements=["order_id"],
    set_={
        "status": _sa_insert_reservations.excluded.status,
        "lines": _sa_insert_reservations.excluded.lines,
        "reason": _sa_insert_reservations.excluded.reason,
        "expires_at": _sa_insert_reservations.excluded.expires_at,
        "updated_at": sa.func.now(),
    },
)

# The order insert with every statement built once (today OrderRepository.add and
# IdempotencyKeys.claim/record build theirs on every call).
_SA_INSERT_ORDER = sa.insert(orders)
_SA_INSERT_LINES = sa.insert(order_lines)
_SA_INSERT_HISTORY = sa.insert(order_history)
_SA_CLAIM_KEY = (
    insert(idempotency_keys)
    .values(status_code=0, response={})
    .on_conflict_do_nothing()
    .returning(idempotency_keys.c.key)
)
_SA_RECORD_KEY = (
    sa.update(idempotency_keys)
    .where(
        idempotency_keys.c.customer_id == sa.bindparam("c_id"),
        idempotency_keys.c.key == sa.bindparam("c_key"),
    )
    .values(status_code=sa.bindparam("status_code"), response=sa.bindparam("response"))
)

# ------------------------------------------------------------------------------ SQLAlchemy ORM


class Base(DeclarativeBase):
    pass


class StockRow(Base):
    __table__ = stock


class ReservationRow(Base):
    __table__ = reservations


class LineRow(Base):
    __table__ = order_lines


class HistoryRow(Base):
    __table__ = order_history


class OrderRow(Base):
    __table__ = orders
    lines = relationship(LineRow, lazy="raise")
    history = relationship(HistoryRow, lazy="raise")


class PriceRow(Base):
    __table__ = catalog_prices


class OutboxRow(Base):
    __table__ = outbox_table


_ORM_LOCK_STOCK = (
    sa.select(StockRow)
    .where(StockRow.product_id.in_(sa.bindparam("ids", expanding=True)))  # as StockRepository.lock
    .order_by(sa.cast(StockRow.product_id, sa.Text))
    .with_for_update()
)
_ORM_PRICES = sa.select(PriceRow).where(PriceRow.product_id.in_(sa.bindparam("ids", expanding=True)))


# ------------------------------------------------------------------------------ the wire counter


class WireCounter:
    """A TCP proxy in front of PostgreSQL that parses the protocol both ways and counts round
    trips (client flights sent after every earlier Sync/Query was answered, or after the answer
    to a Flush), statements
    (Execute and simple Query messages) and bytes. Runs its own event loop in a thread; used
    only in the counting pass, never while CPU is being timed."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.round_trips = 0
        self.statements = 0
        self.trace: list[str] | None = None  # the messages, for debugging the counter
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_all(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def reset(self) -> None:
        self.round_trips = 0
        self.statements = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        state = {"started": False, "expect_byte": 0, "outstanding": 0, "busy": False, "flushed": False}
        cbuf, sbuf = bytearray(), bytearray()

        def client_messages() -> None:
            while True:
                if not state["started"]:
                    if len(cbuf) < 8:
                        return
                    length, code = struct.unpack("!II", cbuf[:8])
                    if len(cbuf) < length:
                        return
                    del cbuf[:length]
                    if code in (80877103, 80877104):  # SSLRequest / GSSENCRequest: one byte back
                        state["expect_byte"] += 1
                    else:
                        state["started"] = True
                    continue
                if len(cbuf) < 5:
                    return
                kind = chr(cbuf[0])
                (length,) = struct.unpack("!I", cbuf[1:5])
                if len(cbuf) < length + 1:
                    return
                del cbuf[: length + 1]
                if kind == "X":
                    continue
                if self.trace is not None:
                    self.trace.append(">" + kind)
                if not state["busy"]:
                    self.round_trips += 1
                    state["busy"] = True
                if kind in "EQ":
                    self.statements += 1
                if kind in "SQ":
                    state["outstanding"] += 1
                elif kind == "H":  # Flush: the client wants what is ready so far, and waits for it
                    state["flushed"] = True

        def server_messages() -> None:
            while True:
                if state["expect_byte"]:
                    if not sbuf:
                        return
                    del sbuf[:1]
                    state["expect_byte"] -= 1
                    continue
                if len(sbuf) < 5:
                    return
                kind = chr(sbuf[0])
                (length,) = struct.unpack("!I", sbuf[1:5])
                if len(sbuf) < length + 1:
                    return
                del sbuf[: length + 1]
                if self.trace is not None:
                    self.trace.append("<" + kind)
                if kind == "Z":
                    state["outstanding"] = max(0, state["outstanding"] - 1)
                    if state["outstanding"] == 0:
                        state["busy"] = False
                if state["flushed"]:
                    # An answer to a Flush: the client waited for it. (The server holds back its
                    # output until a Sync or Flush, so data that arrives otherwise is rare: only
                    # past its 8 kB send buffer. asyncpg streams COPY data without waiting for
                    # the CopyInResponse, so that is no wait either.)
                    state["busy"] = state["flushed"] = False

        async def pump(
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
            buf: bytearray,
            parse: Callable[[], None],
        ) -> None:
            try:
                while data := await reader.read(65536):
                    buf += data
                    parse()  # count before forwarding: the other side reacts only after this
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        await asyncio.gather(
            pump(c_reader, s_writer, cbuf, client_messages),
            pump(s_reader, c_writer, sbuf, server_messages),
        )


# ------------------------------------------------------------------------------ inputs


@dataclass
class World:
    product_ids: list[UUID]
    prices: dict[UUID, tuple[str, str, int]]  # sku, name, price_cents


@dataclass
class ReserveInput:
    envelopes: list[Envelope]
    orders: list[tuple[UUID, dict[UUID, int]]]  # order_id, quantities per product (product-id order)
    rows: list[dict[str, Any]]  # the StockReserved outbox rows
    expires_at: datetime


@dataclass
class PlaceInput:
    order: Order
    request_hash: str
    response: dict[str, Any]
    row: dict[str, Any]


def _outbox_row(envelope: Envelope) -> dict[str, Any]:
    row = outbox.row(envelope)
    row["trace_headers"] = dict(TRACE)  # as written inside a request's span
    return row


def _wanted(world: World, rng: random.Random) -> dict[UUID, int]:
    picked = rng.sample(world.product_ids, LINES_PER_ORDER)
    return dict(sorted(((p, rng.randint(1, 3)) for p in picked), key=lambda kv: str(kv[0])))


def reserve_input(world: World, rng: random.Random, n: int) -> ReserveInput:
    envelopes, orders_, rows = [], [], []
    for _ in range(n):
        order_id = uuid.uuid4()
        wanted = _wanted(world, rng)
        placed = OrderPlaced(
            order_id=order_id,
            customer_id=uuid.uuid4(),
            customer_email="ada@example.com",
            lines=tuple(
                OrderLine(
                    product_id=p, sku=world.prices[p][0], quantity=q, unit_price_cents=world.prices[p][2]
                )
                for p, q in wanted.items()
            ),
            total_cents=sum(world.prices[p][2] * q for p, q in wanted.items()),
            currency="USD",
            payment_token="tok_visa",
            placed_at=datetime.now(UTC),
        )
        envelopes.append(Envelope.wrap(placed, producer="orders", aggregate_id=str(order_id)))
        orders_.append((order_id, wanted))
        reserved = StockReserved(
            order_id=order_id, lines=tuple(StockLine(product_id=p, quantity=q) for p, q in wanted.items())
        )
        rows.append(_outbox_row(Envelope.wrap(reserved, producer="inventory", aggregate_id=str(order_id))))
    return ReserveInput(envelopes, orders_, rows, datetime.now(UTC) + timedelta(seconds=60))


def place_input(world: World, rng: random.Random) -> PlaceInput:
    wanted = _wanted(world, rng)
    at = datetime.now(UTC)
    order = Order.place(
        order_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        customer_email="ada@example.com",
        lines=[
            Line(
                product_id=p,
                sku=world.prices[p][0],
                name=world.prices[p][1],
                quantity=q,
                unit_price_cents=world.prices[p][2],
            )
            for p, q in wanted.items()
        ],
        currency="USD",
        at=at,
        saga_timeout=timedelta(seconds=30),
        idempotency_key=uuid.uuid4().hex,
    )
    placed = OrderPlaced(
        order_id=order.id,
        customer_id=order.customer_id,
        customer_email=order.customer_email,
        lines=tuple(
            OrderLine(
                product_id=li.product_id,
                sku=li.sku,
                quantity=li.quantity,
                unit_price_cents=li.unit_price_cents,
            )
            for li in order.lines
        ),
        total_cents=order.total_cents,
        currency=order.currency,
        payment_token="tok_visa",
        placed_at=order.created_at,
        idempotency_key=order.idempotency_key,
    )
    response = {
        "id": str(order.id),
        "status": "PENDING",
        "total_cents": order.total_cents,
        "currency": "USD",
        "lines": [{"product_id": str(li.product_id), "quantity": li.quantity} for li in order.lines],
    }
    row = _outbox_row(Envelope.wrap(placed, producer="orders", aggregate_id=str(order.id)))
    return PlaceInput(order, uuid.uuid4().hex, response, row)


def _outbox_arrays(rows: list[dict[str, Any]], jsonb: Callable[[Any], Any]) -> tuple[list[Any], ...]:
    return (
        [r["event_id"] for r in rows],
        [r["topic"] for r in rows],
        [r["key"] for r in rows],
        [r["event_type"] for r in rows],
        [jsonb(r["envelope"]) for r in rows],
        [jsonb(r["trace_headers"]) for r in rows],
    )


def _identity(value: Any) -> Any:
    return value


# ------------------------------------------------------------------------------ connections


@dataclass
class Database:
    name: str
    port: int

    def sa_url(self, port: int) -> str:
        return (
            f"postgresql+psycopg://{self.name}:{PASSWORD}@127.0.0.1:{port}/{self.name}"
            "?sslmode=disable&gssencmode=disable"
        )

    def sa_asyncpg_url(self, port: int) -> str:
        return f"postgresql+asyncpg://{self.name}:{PASSWORD}@127.0.0.1:{port}/{self.name}?ssl=disable"

    def conninfo(self, port: int) -> str:
        return (
            f"host=127.0.0.1 port={port} dbname={self.name} user={self.name} password={PASSWORD} "
            "sslmode=disable gssencmode=disable"
        )


@dataclass
class Client:
    """One client's connection state for one case, and how to find its server backend."""

    kind: str
    handle: Any
    backend_pid: int
    close: Callable[[], Awaitable[None]]


async def _sa_pid(conn: AsyncConnection) -> int:
    driver = (await conn.get_raw_connection()).driver_connection
    if isinstance(driver, asyncpg.Connection):
        return int(driver.get_server_pid())
    return int(driver.info.backend_pid)  # type: ignore[union-attr]


async def open_client(kind: str, db: Database, port: int) -> Client:
    if kind in ("sa_session", "sa_orm", "sa_session_asyncpg"):
        url = db.sa_asyncpg_url(port) if kind.endswith("_asyncpg") else db.sa_url(port)
        engine = make_engine(url, pool_size=2)
        factory = make_session_factory(engine)
        async with engine.connect() as conn:  # the pool's one connection, used serially
            pid = await _sa_pid(conn)
        return Client(kind, factory, pid, engine.dispose)
    if kind in ("sa_conn", "sa_conn_asyncpg"):
        url = db.sa_asyncpg_url(port) if kind.endswith("_asyncpg") else db.sa_url(port)
        engine = make_engine(url, pool_size=2)
        conn = await engine.connect()

        async def close_conn(engine: AsyncEngine = engine, conn: AsyncConnection = conn) -> None:
            await conn.close()
            await engine.dispose()

        return Client(kind, conn, await _sa_pid(conn), close_conn)
    if kind in ("psycopg", "psycopg_pipeline"):
        pconn = await psycopg.AsyncConnection.connect(db.conninfo(port), autocommit=True)
        return Client(kind, pconn, pconn.info.backend_pid, pconn.close)
    if kind == "asyncpg":
        aconn = await asyncpg.connect(
            host="127.0.0.1", port=port, user=db.name, password=PASSWORD, database=db.name, ssl=False
        )
        await aconn.set_type_codec(
            "jsonb", encoder=_jsonb_out, decoder=_jsonb_in, schema="pg_catalog", format="binary"
        )
        return Client(kind, aconn, aconn.get_server_pid(), aconn.close)
    raise ValueError(kind)


def _jsonb_out(value: Any) -> bytes:
    return b"\x01" + json.dumps(value).encode()  # jsonb's binary format: version 1, then the text


def _jsonb_in(data: bytes) -> Any:
    return json.loads(data[1:])


@contextlib.asynccontextmanager
async def unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """What ``UnitOfWork`` does around a handler: a new session, begin, (the caller commits),
    then rollback and close, which returns the connection to the pool."""
    session = factory()
    await session.begin()
    try:
        yield session
    finally:
        await session.rollback()
        await session.close()


@contextlib.asynccontextmanager
async def pipelined_transaction(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
    """BEGIN ... COMMIT in pipeline mode, queued like the statements between them, so that they
    travel with them: psycopg's own ``transaction()`` syncs the pipeline when it opens and when
    it commits, and leaving the pipeline syncs again (three round trips for one statement, as
    counted on the wire). A statement that fails surfaces at the next sync; then roll back."""
    try:
        async with conn.pipeline():
            await conn.execute("BEGIN")
            yield
            await conn.execute("COMMIT")
    except BaseException:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            await conn.execute("ROLLBACK")
        raise


# ------------------------------------------------------------------------------ inbox_claim


async def inbox_sa_session(c: Client, envelopes: list[Envelope]) -> None:
    async with unit_of_work(c.handle) as session:
        await inbox.claim(session, consumer=CONSUMER, envelopes=envelopes)
        await session.commit()


async def inbox_sa_conn(c: Client, envelopes: list[Envelope]) -> None:
    async with c.handle.begin():
        await inbox.claim(c.handle, consumer=CONSUMER, envelopes=envelopes)


def _claim_args(envelopes: list[Envelope]) -> tuple[Any, ...]:
    return CONSUMER, [e.event_id for e in envelopes], [e.event_type for e in envelopes]


async def inbox_psycopg(c: Client, envelopes: list[Envelope]) -> None:
    async with c.handle.transaction():
        cur = await c.handle.execute(_pg(CLAIM), _claim_args(envelopes))
        {r[0] for r in await cur.fetchall()}


async def inbox_pipeline(c: Client, envelopes: list[Envelope]) -> None:
    async with pipelined_transaction(c.handle):
        cur = await c.handle.execute(_pg(CLAIM), _claim_args(envelopes))
    {r[0] for r in await cur.fetchall()}  # BEGIN, INSERT and COMMIT went in one flight


async def inbox_asyncpg(c: Client, envelopes: list[Envelope]) -> None:
    async with c.handle.transaction():
        {r[0] for r in await c.handle.fetch(CLAIM, *_claim_args(envelopes))}


# ------------------------------------------------------------------------------ outbox_append


async def append_sa_session(c: Client, rows: list[dict[str, Any]]) -> None:
    async with unit_of_work(c.handle) as session:
        await outbox.append(session, rows)
        await session.commit()


async def append_sa_conn(c: Client, rows: list[dict[str, Any]]) -> None:
    async with c.handle.begin():
        await outbox.append(c.handle, rows)


async def append_psycopg_many(c: Client, rows: list[dict[str, Any]]) -> None:
    async with c.handle.transaction(), c.handle.cursor() as cur:
        await cur.executemany(
            _pg(APPEND_ONE),
            [
                (
                    r["event_id"],
                    r["topic"],
                    r["key"],
                    r["event_type"],
                    Jsonb(r["envelope"]),
                    Jsonb(r["trace_headers"]),
                )
                for r in rows
            ],
        )


async def append_psycopg(c: Client, rows: list[dict[str, Any]]) -> None:
    async with c.handle.transaction():
        await c.handle.execute(_pg(APPEND), _outbox_arrays(rows, Jsonb))


async def append_pipeline(c: Client, rows: list[dict[str, Any]]) -> None:
    async with pipelined_transaction(c.handle):
        await c.handle.execute(_pg(APPEND), _outbox_arrays(rows, Jsonb))


async def append_asyncpg_many(c: Client, rows: list[dict[str, Any]]) -> None:
    async with c.handle.transaction():
        await c.handle.executemany(
            APPEND_ONE,
            [
                (r["event_id"], r["topic"], r["key"], r["event_type"], r["envelope"], r["trace_headers"])
                for r in rows
            ],
        )


async def append_asyncpg(c: Client, rows: list[dict[str, Any]]) -> None:
    async with c.handle.transaction():
        await c.handle.execute(APPEND, *_outbox_arrays(rows, _identity))


async def append_asyncpg_copy(c: Client, rows: list[dict[str, Any]]) -> None:
    # COPY cannot call clock_timestamp() per row: created_at is the client's clock here.
    now = datetime.now(UTC)
    async with c.handle.transaction():
        await c.handle.copy_records_to_table(
            "outbox",
            columns=("event_id", "topic", "key", "event_type", "envelope", "trace_headers", "created_at"),
            records=[
                (
                    r["event_id"],
                    r["topic"],
                    r["key"],
                    r["event_type"],
                    r["envelope"],
                    r["trace_headers"],
                    now,
                )
                for r in rows
            ],
        )


# ------------------------------------------------------------------------------ relay_claim


@dataclass
class RelayState:
    claim: Any  # the relay's own statement for this batch size


async def relay_sa_conn(c: Client, claim: Any) -> None:
    async with c.handle.begin():
        rows = sorted((await c.handle.execute(claim)).all(), key=lambda row: row.id)
        assert rows  # (the Kafka sends happen here, before the commit)


async def relay_psycopg(c: Client, n: int) -> None:
    async with c.handle.transaction():
        cur = await c.handle.execute(_pg(RELAY_CLAIM), (n,))
        rows = sorted(await cur.fetchall(), key=lambda row: row[0])
        assert rows


async def relay_pipeline(c: Client, n: int) -> None:
    async with pipelined_transaction(c.handle):
        cur = await c.handle.execute(_pg(RELAY_CLAIM), (n,))
        rows = sorted(await cur.fetchall(), key=lambda row: row[0])  # BEGIN + UPDATE in one flight
        assert rows  # the sends must be acknowledged before COMMIT, so it cannot share the flight


async def relay_asyncpg(c: Client, n: int) -> None:
    async with c.handle.transaction():
        rows = sorted(await c.handle.fetch(RELAY_CLAIM, n), key=lambda row: row[0])
        assert rows


# ------------------------------------------------------------------------------ reserve_each (today)


async def _reserve_each_sa(db: Any, inp: ReserveInput) -> None:
    """inventory.service_layer.handlers.reserve_stock for each event, with the real repositories
    (``db`` is a session or, duck-typed, a connection: both have ``execute``)."""
    await inbox.claim(db, consumer=CONSUMER, envelopes=inp.envelopes)
    stocks, reservations_ = StockRepository(db), ReservationRepository(db)
    for order_id, wanted in inp.orders:
        if await reservations_.get_for_update(order_id=order_id) is not None:
            continue
        items = await stocks.lock(product_ids=wanted)
        reserve_all(items, wanted)
        await stocks.save(items.values())
        await reservations_.save(
            Reservation(
                order_id=order_id, status=ReservationStatus.RESERVED, lines=wanted, expires_at=inp.expires_at
            )
        )
    await outbox.append(db, inp.rows)


async def reserve_each_sa_session(c: Client, inp: ReserveInput) -> None:
    async with unit_of_work(c.handle) as session:
        await _reserve_each_sa(session, inp)
        await session.commit()


async def reserve_each_sa_conn(c: Client, inp: ReserveInput) -> None:
    async with c.handle.begin():
        await _reserve_each_sa(c.handle, inp)


async def reserve_each_orm(c: Client, inp: ReserveInput) -> None:
    async with unit_of_work(c.handle) as session:
        await inbox.claim(session, consumer=CONSUMER, envelopes=inp.envelopes)
        for order_id, wanted in inp.orders:
            if await session.get(ReservationRow, order_id, with_for_update=True) is not None:
                continue
            rows = {r.product_id: r for r in (await session.scalars(_ORM_LOCK_STOCK, {"ids": list(wanted)}))}
            if any(rows[p].on_hand - rows[p].reserved < q for p, q in wanted.items()):
                raise RuntimeError("out of stock")
            for p, q in wanted.items():
                rows[p].reserved += q
                rows[p].updated_at = sa.func.now()
            session.add(
                ReservationRow(
                    order_id=order_id,
                    status=ReservationStatus.RESERVED.value,
                    lines={str(k): v for k, v in wanted.items()},
                    reason=None,
                    expires_at=inp.expires_at,
                )
            )
        await outbox.append(session, inp.rows)
        await session.commit()


def _items(rows: Any) -> dict[UUID, StockItem]:
    return {r[0]: StockItem(product_id=r[0], sku=r[1], on_hand=r[2], reserved=r[3]) for r in rows}


def _lines_json(wanted: dict[UUID, int]) -> dict[str, int]:
    return {str(k): v for k, v in wanted.items()}


async def reserve_each_psycopg(c: Client, inp: ReserveInput) -> None:
    conn = c.handle
    async with conn.transaction():
        await (await conn.execute(_pg(CLAIM), _claim_args(inp.envelopes))).fetchall()
        for order_id, wanted in inp.orders:
            if await (await conn.execute(_pg(LOCK_RESERVATION), (order_id,))).fetchone() is not None:
                continue
            items = _items(await (await conn.execute(_pg(LOCK_STOCK), (list(wanted),))).fetchall())
            reserve_all(items, wanted)
            for item in items.values():
                await conn.execute(_pg(SAVE_STOCK), (item.on_hand, item.reserved, item.product_id))
            await conn.execute(
                _pg(SAVE_RESERVATION),
                (order_id, "RESERVED", Jsonb(_lines_json(wanted)), None, inp.expires_at),
            )
        await conn.execute(_pg(APPEND), _outbox_arrays(inp.rows, Jsonb))


async def reserve_each_pipeline(c: Client, inp: ReserveInput) -> None:
    """The same statements; the client waits once per event (for its two locked reads), and each
    event's writes travel with the next event's reads, the last ones with the COMMIT."""
    conn = c.handle
    async with pipelined_transaction(conn):
        claim = await conn.execute(_pg(CLAIM), _claim_args(inp.envelopes))
        claimed: set[UUID] | None = None
        for order_id, wanted in inp.orders:
            locked = await conn.execute(_pg(LOCK_RESERVATION), (order_id,))
            stocked = await conn.execute(_pg(LOCK_STOCK), (list(wanted),))
            if claimed is None:
                claimed = {r[0] for r in await claim.fetchall()}  # sync: claim + this event's reads
            if await locked.fetchone() is not None:
                continue
            items = _items(await stocked.fetchall())
            reserve_all(items, wanted)
            for item in items.values():
                await conn.execute(_pg(SAVE_STOCK), (item.on_hand, item.reserved, item.product_id))
            await conn.execute(
                _pg(SAVE_RESERVATION),
                (order_id, "RESERVED", Jsonb(_lines_json(wanted)), None, inp.expires_at),
            )
        await conn.execute(_pg(APPEND), _outbox_arrays(inp.rows, Jsonb))


async def reserve_each_asyncpg(c: Client, inp: ReserveInput) -> None:
    conn = c.handle
    async with conn.transaction():
        await conn.fetch(CLAIM, *_claim_args(inp.envelopes))
        for order_id, wanted in inp.orders:
            if await conn.fetchrow(LOCK_RESERVATION, order_id) is not None:
                continue
            items = _items(await conn.fetch(LOCK_STOCK, list(wanted)))
            reserve_all(items, wanted)
            for item in items.values():
                await conn.execute(SAVE_STOCK, item.on_hand, item.reserved, item.product_id)
            await conn.execute(
                SAVE_RESERVATION, order_id, "RESERVED", _lines_json(wanted), None, inp.expires_at
            )
        await conn.execute(APPEND, *_outbox_arrays(inp.rows, _identity))


# ------------------------------------------------------------------------------ reserve_set (batch-first)


@dataclass
class SetPlan:
    """The batch's decisions, made once its rows are read: what every client then writes."""

    items: dict[UUID, StockItem]
    reserved: list[tuple[UUID, dict[UUID, int]]] = field(default_factory=list)


def _plan(inp: ReserveInput, existing: set[UUID], items: dict[UUID, StockItem]) -> SetPlan:
    plan = SetPlan(items)
    for order_id, wanted in inp.orders:
        if order_id in existing:
            continue
        reserve_all(items, wanted)
        plan.reserved.append((order_id, wanted))
    return plan


def _products(inp: ReserveInput) -> list[UUID]:
    return sorted({p for _, wanted in inp.orders for p in wanted}, key=str)


def _stock_arrays(plan: SetPlan) -> tuple[list[Any], ...]:
    items = list(plan.items.values())
    return [i.product_id for i in items], [i.on_hand for i in items], [i.reserved for i in items]


def _reservation_arrays(
    plan: SetPlan, inp: ReserveInput, jsonb: Callable[[Any], Any]
) -> tuple[list[Any], ...]:
    n = len(plan.reserved)
    return (
        [o for o, _ in plan.reserved],
        ["RESERVED"] * n,
        [jsonb(_lines_json(w)) for _, w in plan.reserved],
        [None] * n,
        [inp.expires_at] * n,
    )


async def _reserve_set_sa(db: Any, inp: ReserveInput) -> None:
    await inbox.claim(db, consumer=CONSUMER, envelopes=inp.envelopes)
    existing = set((await db.execute(_SA_LOCK_RESERVATIONS, {"ids": [o for o, _ in inp.orders]})).scalars())
    items = _items(await db.execute(_SA_LOCK_STOCKS, {"ids": _products(inp)}))
    plan = _plan(inp, existing, items)
    ids, on_hand, reserved = _stock_arrays(plan)
    await db.execute(_SA_SAVE_STOCKS, {"ids": ids, "on_hand": on_hand, "reserved": reserved})
    o, s, lines, reason, expires = _reservation_arrays(plan, inp, _identity)
    await db.execute(
        _SA_SAVE_RESERVATIONS,
        {"ids": o, "status": s, "lines": lines, "reason": reason, "expires_at": expires},
    )
    await outbox.append(db, inp.rows)


async def reserve_set_sa_session(c: Client, inp: ReserveInput) -> None:
    async with unit_of_work(c.handle) as session:
        await _reserve_set_sa(session, inp)
        await session.commit()


async def reserve_set_sa_conn(c: Client, inp: ReserveInput) -> None:
    async with c.handle.begin():
        await _reserve_set_sa(c.handle, inp)


async def reserve_set_psycopg(c: Client, inp: ReserveInput) -> None:
    conn = c.handle
    async with conn.transaction():
        await (await conn.execute(_pg(CLAIM), _claim_args(inp.envelopes))).fetchall()
        cur = await conn.execute(_pg(LOCK_RESERVATIONS), ([o for o, _ in inp.orders],))
        existing = {r[0] for r in await cur.fetchall()}
        items = _items(await (await conn.execute(_pg(LOCK_STOCK), (_products(inp),))).fetchall())
        plan = _plan(inp, existing, items)
        await conn.execute(_pg(SAVE_STOCKS), _stock_arrays(plan))
        await conn.execute(_pg(SAVE_RESERVATIONS), _reservation_arrays(plan, inp, Jsonb))
        await conn.execute(_pg(APPEND), _outbox_arrays(inp.rows, Jsonb))


async def reserve_set_pipeline(c: Client, inp: ReserveInput) -> None:
    """Two flights: BEGIN + claim + both locked reads; then the writes + COMMIT."""
    conn = c.handle
    async with pipelined_transaction(conn):
        claim = await conn.execute(_pg(CLAIM), _claim_args(inp.envelopes))
        locked = await conn.execute(_pg(LOCK_RESERVATIONS), ([o for o, _ in inp.orders],))
        stocked = await conn.execute(_pg(LOCK_STOCK), (_products(inp),))
        {r[0] for r in await claim.fetchall()}
        existing = {r[0] for r in await locked.fetchall()}
        plan = _plan(inp, existing, _items(await stocked.fetchall()))
        await conn.execute(_pg(SAVE_STOCKS), _stock_arrays(plan))
        await conn.execute(_pg(SAVE_RESERVATIONS), _reservation_arrays(plan, inp, Jsonb))
        await conn.execute(_pg(APPEND), _outbox_arrays(inp.rows, Jsonb))


async def reserve_set_asyncpg(c: Client, inp: ReserveInput) -> None:
    conn = c.handle
    async with conn.transaction():
        await conn.fetch(CLAIM, *_claim_args(inp.envelopes))
        existing = {r[0] for r in await conn.fetch(LOCK_RESERVATIONS, [o for o, _ in inp.orders])}
        plan = _plan(inp, existing, _items(await conn.fetch(LOCK_STOCK, _products(inp))))
        await conn.execute(SAVE_STOCKS, *_stock_arrays(plan))
        await conn.execute(SAVE_RESERVATIONS, *_reservation_arrays(plan, inp, _identity))
        await conn.execute(APPEND, *_outbox_arrays(inp.rows, _identity))


# ------------------------------------------------------------------------------ place_order


async def _place_sa(session: Any, inp: PlaceInput) -> None:
    """orders.service_layer.handlers.place_order's writes, with the real repositories."""
    order = inp.order
    idem = IdempotencyKeys(session)
    key = order.idempotency_key or ""
    if not await idem.claim(customer_id=order.customer_id, key=key, request_hash=inp.request_hash):
        raise RuntimeError("key taken")
    priced = await CatalogPrices(session).get([li.product_id for li in order.lines])
    assert len(priced) == len(order.lines)
    await OrderRepository(session).add(order)
    await idem.record(customer_id=order.customer_id, key=key, status_code=202, response=inp.response)
    await outbox.append(session, [inp.row])


async def place_sa_session(c: Client, inp: PlaceInput) -> None:
    async with unit_of_work(c.handle) as session:
        await _place_sa(session, inp)
        await session.commit()


def _order_row(order: Order) -> dict[str, Any]:
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
        "trace_id": None,
    }


def _line_rows(order: Order) -> list[dict[str, Any]]:
    return [
        {
            "order_id": order.id,
            "line_no": n,
            "product_id": li.product_id,
            "sku": li.sku,
            "name": li.name,
            "quantity": li.quantity,
            "unit_price_cents": li.unit_price_cents,
        }
        for n, li in enumerate(order.lines, start=1)
    ]


async def place_sa_prebuilt(c: Client, inp: PlaceInput) -> None:
    """As ``place_sa_session`` but with every statement built once (not what the code does today)."""
    order = inp.order
    async with unit_of_work(c.handle) as session:
        claimed = await session.execute(
            _SA_CLAIM_KEY,
            {
                "customer_id": order.customer_id,
                "key": order.idempotency_key,
                "request_hash": inp.request_hash,
            },
        )
        if claimed.first() is None:
            raise RuntimeError("key taken")
        priced = await CatalogPrices(session).get([li.product_id for li in order.lines])
        assert len(priced) == len(order.lines)
        await session.execute(_SA_INSERT_ORDER, _order_row(order))
        await session.execute(_SA_INSERT_LINES, _line_rows(order))
        await session.execute(
            _SA_INSERT_HISTORY,
            [
                {"order_id": order.id, "status": h.status, "note": h.note, "at": h.at}
                for h in order.new_history
            ],
        )
        await session.execute(
            _SA_RECORD_KEY,
            {
                "c_id": order.customer_id,
                "c_key": order.idempotency_key,
                "status_code": 202,
                "response": inp.response,
            },
        )
        await outbox.append(session, [inp.row])
        await session.commit()


async def place_orm(c: Client, inp: PlaceInput) -> None:
    order = inp.order
    async with unit_of_work(c.handle) as session:
        idem = IdempotencyKeys(session)
        key = order.idempotency_key or ""
        if not await idem.claim(customer_id=order.customer_id, key=key, request_hash=inp.request_hash):
            raise RuntimeError("key taken")
        priced = list(await session.scalars(_ORM_PRICES, {"ids": [li.product_id for li in order.lines]}))
        assert len(priced) == len(order.lines)
        session.add(
            OrderRow(
                **_order_row(order),
                lines=[LineRow(**row) for row in _line_rows(order)],
                history=[HistoryRow(status=h.status, note=h.note, at=h.at) for h in order.new_history],
            )
        )
        await idem.record(customer_id=order.customer_id, key=key, status_code=202, response=inp.response)
        session.add(OutboxRow(**inp.row, created_at=sa.func.clock_timestamp()))
        await session.commit()


def _order_args(order: Order) -> tuple[Any, ...]:
    r = _order_row(order)
    return tuple(r.values())


def _lines_args(order: Order) -> tuple[Any, ...]:
    lines = order.lines
    return (
        order.id,
        list(range(1, len(lines) + 1)),
        [li.product_id for li in lines],
        [li.sku for li in lines],
        [li.name for li in lines],
        [li.quantity for li in lines],
        [li.unit_price_cents for li in lines],
    )


async def place_psycopg(c: Client, inp: PlaceInput) -> None:
    conn, order = c.handle, inp.order
    async with conn.transaction():
        cur = await conn.execute(_pg(CLAIM_KEY), (order.customer_id, order.idempotency_key, inp.request_hash))
        if await cur.fetchone() is None:
            raise RuntimeError("key taken")
        cur = await conn.execute(_pg(PRICES), ([li.product_id for li in order.lines],))
        assert len(await cur.fetchall()) == len(order.lines)
        await conn.execute(_pg(INSERT_ORDER), _order_args(order))
        await conn.execute(_pg(INSERT_LINES), _lines_args(order))
        h = order.new_history[0]
        await conn.execute(_pg(INSERT_HISTORY), (order.id, h.status, h.note, h.at))
        await conn.execute(
            _pg(RECORD_KEY), (202, Jsonb(inp.response), order.customer_id, order.idempotency_key)
        )
        await conn.execute(_pg(APPEND), _outbox_arrays([inp.row], Jsonb))


async def place_pipeline(c: Client, inp: PlaceInput) -> None:
    """Two flights: BEGIN + key claim + price lookup (the prices decide the order); then every
    write + COMMIT."""
    conn, order = c.handle, inp.order
    async with pipelined_transaction(conn):
        claim = await conn.execute(
            _pg(CLAIM_KEY), (order.customer_id, order.idempotency_key, inp.request_hash)
        )
        prices = await conn.execute(_pg(PRICES), ([li.product_id for li in order.lines],))
        if await claim.fetchone() is None:
            raise RuntimeError("key taken")
        assert len(await prices.fetchall()) == len(order.lines)
        await conn.execute(_pg(INSERT_ORDER), _order_args(order))
        await conn.execute(_pg(INSERT_LINES), _lines_args(order))
        h = order.new_history[0]
        await conn.execute(_pg(INSERT_HISTORY), (order.id, h.status, h.note, h.at))
        await conn.execute(
            _pg(RECORD_KEY), (202, Jsonb(inp.response), order.customer_id, order.idempotency_key)
        )
        await conn.execute(_pg(APPEND), _outbox_arrays([inp.row], Jsonb))


async def place_asyncpg(c: Client, inp: PlaceInput) -> None:
    conn, order = c.handle, inp.order
    async with conn.transaction():
        if await conn.fetchrow(CLAIM_KEY, order.customer_id, order.idempotency_key, inp.request_hash) is None:
            raise RuntimeError("key taken")
        assert len(await conn.fetch(PRICES, [li.product_id for li in order.lines])) == len(order.lines)
        await conn.execute(INSERT_ORDER, *_order_args(order))
        await conn.execute(INSERT_LINES, *_lines_args(order))
        h = order.new_history[0]
        await conn.execute(INSERT_HISTORY, order.id, h.status, h.note, h.at)
        await conn.execute(RECORD_KEY, 202, inp.response, order.customer_id, order.idempotency_key)
        await conn.execute(APPEND, *_outbox_arrays([inp.row], _identity))


# ------------------------------------------------------------------------------ cases


@dataclass
class Case:
    family: str
    batch: int
    variant: str  # the row label: client, and how it sends multi-row writes where that differs
    kind: str  # which connection it opens (see open_client)
    run: Callable[[Client, Any], Awaitable[None]]
    make_input: Callable[[], Any]
    db: str  # "inventory" or "orders"
    tx_scale: float = 1.0  # fewer transactions per run for the heavy ones
    orders_per_tx: int = 1
    # filled while running
    client: Client | None = None
    cpu: list[float] = field(default_factory=list)  # seconds per transaction, one per run
    wall: list[float] = field(default_factory=list)
    server_ticks: int = 0
    server_tx: int = 0
    round_trips: float | None = None
    statements: float | None = None

    @property
    def key(self) -> str:
        return f"{self.family}/{self.batch}/{self.variant}"


def build_cases(world: World, rng: random.Random) -> list[Case]:
    cases: list[Case] = []

    def add(
        family: str, batch: int, variant: str, kind: str, run: Any, make: Any, db: str, **kw: Any
    ) -> None:
        cases.append(Case(family, batch, variant, kind, run, make, db, **kw))

    for n in (1, 50):
        envelopes = lambda n=n: reserve_input(world, rng, n).envelopes  # noqa: E731
        for variant, kind, fn in (
            ("sa_session", "sa_session", inbox_sa_session),
            ("sa_conn", "sa_conn", inbox_sa_conn),
            ("sa_session on asyncpg", "sa_session_asyncpg", inbox_sa_session),
            ("psycopg", "psycopg", inbox_psycopg),
            ("psycopg_pipeline", "psycopg_pipeline", inbox_pipeline),
            ("asyncpg", "asyncpg", inbox_asyncpg),
        ):
            add("inbox_claim", n, variant, kind, fn, envelopes, "inventory")
    for n in (1, 50):
        rows = lambda n=n: reserve_input(world, rng, n).rows  # noqa: E731
        for variant, kind, fn in (
            ("sa_session (executemany)", "sa_session", append_sa_session),
            ("sa_conn (executemany)", "sa_conn", append_sa_conn),
            ("sa_session on asyncpg (executemany)", "sa_session_asyncpg", append_sa_session),
            ("psycopg executemany", "psycopg", append_psycopg_many),
            ("psycopg unnest", "psycopg", append_psycopg),
            ("psycopg_pipeline unnest", "psycopg_pipeline", append_pipeline),
            ("asyncpg executemany", "asyncpg", append_asyncpg_many),
            ("asyncpg unnest", "asyncpg", append_asyncpg),
            ("asyncpg copy", "asyncpg", append_asyncpg_copy),
        ):
            add("outbox_append", n, variant, kind, fn, rows, "inventory")
    for n in (1, 50):
        for variant, kind, fn, arg in (
            ("sa_conn (the relay today)", "sa_conn", relay_sa_conn, "stmt"),
            ("sa_conn on asyncpg", "sa_conn_asyncpg", relay_sa_conn, "stmt"),
            ("psycopg", "psycopg", relay_psycopg, n),
            ("psycopg_pipeline", "psycopg_pipeline", relay_pipeline, n),
            ("asyncpg", "asyncpg", relay_asyncpg, n),
        ):
            add("relay_claim", n, variant, kind, fn, lambda arg=arg: arg, "inventory")
    for n in (1, 50):
        make = lambda n=n: reserve_input(world, rng, n)  # noqa: E731
        scale = 1.0 if n == 1 else 0.15
        for variant, kind, fn in (
            ("sa_session (today)", "sa_session", reserve_each_sa_session),
            ("sa_conn", "sa_conn", reserve_each_sa_conn),
            ("sa_session on asyncpg", "sa_session_asyncpg", reserve_each_sa_session),
            ("sa_orm", "sa_orm", reserve_each_orm),
            ("psycopg", "psycopg", reserve_each_psycopg),
            ("psycopg_pipeline", "psycopg_pipeline", reserve_each_pipeline),
            ("asyncpg", "asyncpg", reserve_each_asyncpg),
        ):
            add("reserve_each", n, variant, kind, fn, make, "inventory", tx_scale=scale, orders_per_tx=n)
        for variant, kind, fn in (
            ("sa_session", "sa_session", reserve_set_sa_session),
            ("sa_conn", "sa_conn", reserve_set_sa_conn),
            ("sa_session on asyncpg", "sa_session_asyncpg", reserve_set_sa_session),
            ("psycopg", "psycopg", reserve_set_psycopg),
            ("psycopg_pipeline", "psycopg_pipeline", reserve_set_pipeline),
            ("asyncpg", "asyncpg", reserve_set_asyncpg),
        ):
            add("reserve_set", n, variant, kind, fn, make, "inventory", tx_scale=scale * 2, orders_per_tx=n)
    make_place = lambda: place_input(world, rng)  # noqa: E731
    for variant, kind, fn in (
        ("sa_session (today)", "sa_session", place_sa_session),
        ("sa_session, statements built once", "sa_session", place_sa_prebuilt),
        ("sa_session on asyncpg (today's code)", "sa_session_asyncpg", place_sa_session),
        ("sa_orm", "sa_orm", place_orm),
        ("psycopg", "psycopg", place_psycopg),
        ("psycopg_pipeline", "psycopg_pipeline", place_pipeline),
        ("asyncpg", "asyncpg", place_asyncpg),
    ):
        add("place_order", 1, variant, kind, fn, make_place, "orders")
    return cases


# ------------------------------------------------------------------------------ setup


def start_cluster(workdir: Path) -> PostgresCluster:
    cluster = PostgresCluster(data_dir=workdir / "pg" / "data")
    cluster.init()
    cluster.start(fast=False)  # durable: fsync and synchronous_commit on, as the services run
    return cluster


def prepare_databases(cluster: PostgresCluster) -> tuple[dict[str, Database], World]:
    dbs = {}
    for service in ("inventory", "orders"):
        name = f"bench_{service}"
        cluster.ensure_database(name, name, PASSWORD)
        upgrade(cluster.url(name, name, PASSWORD), folder(service))
        assert cluster.port is not None
        dbs[service] = Database(name, cluster.port)
    rng = random.Random(11)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(PRODUCTS)]
    world = World(ids, {p: (f"SKU-{i:05d}", f"Product {i}", 500 + 7 * i) for i, p in enumerate(ids)})
    values = ",".join(f"('{p}', 'SKU-{i:05d}', 1000000000, 0)" for i, p in enumerate(ids))
    cluster.psql(
        f"INSERT INTO stock (product_id, sku, on_hand, reserved) VALUES {values}", db="bench_inventory"
    )
    values = ",".join(
        f"('{p}', '{sku}', '{name}', {price}, 'USD')" for p, (sku, name, price) in world.prices.items()
    )
    cluster.psql(
        f"INSERT INTO catalog_prices (product_id, sku, name, price_cents, currency) VALUES {values}",
        db="bench_orders",
    )
    # Analyzed, so that both plans are the ones a populated database gets.
    cluster.psql("ANALYZE", db="bench_inventory")
    cluster.psql("ANALYZE", db="bench_orders")
    return dbs, world


_SAMPLE_ENVELOPE: str = ""


def prefill_outbox(cluster: PostgresCluster, rows: int) -> None:
    """Unsent rows for the relay to claim (written server-side, outside any timing)."""
    global _SAMPLE_ENVELOPE
    if not _SAMPLE_ENVELOPE:
        placed = StockReserved(
            order_id=uuid.uuid4(), lines=(StockLine(product_id=uuid.uuid4(), quantity=2),) * 2
        )
        _SAMPLE_ENVELOPE = Envelope.wrap(placed, producer="inventory", aggregate_id="x").model_dump_json()
    cluster.psql(
        "INSERT INTO outbox (event_id, topic, key, event_type, envelope, trace_headers, created_at) "
        "SELECT gen_random_uuid(), 'inventory', gen_random_uuid()::text, 'inventory.StockReserved', "
        f":'env'::jsonb, :'trace'::jsonb, clock_timestamp() FROM generate_series(1, {rows})",
        db="bench_inventory",
        variables={"env": _SAMPLE_ENVELOPE, "trace": json.dumps(TRACE)},
    )


def backend_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of stat(5))


# ------------------------------------------------------------------------------ running


async def attach(case: Case, dbs: dict[str, Database], port: int, relay_claims: dict[int, Any]) -> Client:
    client = await open_client(case.kind, dbs[case.db], port)
    if case.family == "relay_claim" and case.kind.startswith("sa_conn"):
        case.make_input = lambda stmt=relay_claims[case.batch]: stmt
    return client


def _relay_rows(case: Case, tx: int) -> int:
    return case.batch * tx if case.family == "relay_claim" else 0


async def run_tx(case: Case, client: Client, inputs: list[Any]) -> None:
    for inp in inputs:
        await case.run(client, inp)


async def count_pass(
    cases: list[Case], dbs: dict[str, Database], cluster: PostgresCluster, relay_claims: dict[int, Any]
) -> None:
    assert cluster.port is not None
    counter = WireCounter(cluster.port)
    counter.start()
    try:
        for case in cases:
            warm, tx = (20, 10) if case.batch == 1 else (6, 4)  # past psycopg's prepare_threshold
            if case.family == "relay_claim":
                prefill_outbox(cluster, _relay_rows(case, warm + tx))
            client = await attach(case, dbs, counter.port, relay_claims)
            try:
                await run_tx(case, client, [case.make_input() for _ in range(warm)])
                inputs = [case.make_input() for _ in range(tx)]
                counter.reset()
                await run_tx(case, client, inputs)
                case.round_trips = counter.round_trips / tx
                case.statements = counter.statements / tx
            finally:
                await client.close()
    finally:
        counter.stop()


async def timing_pass(
    cases: list[Case],
    dbs: dict[str, Database],
    cluster: PostgresCluster,
    relay_claims: dict[int, Any],
    *,
    runs: int,
    tx: int,
    loads: list[tuple[float, float, float]],
) -> None:
    assert cluster.port is not None
    for case in cases:
        case.client = await attach(case, dbs, cluster.port, relay_claims)
        n = max(3, int(tx * case.tx_scale) // 4)
        if case.family == "relay_claim":
            prefill_outbox(cluster, _relay_rows(case, n))
        await run_tx(case, case.client, [case.make_input() for _ in range(n)])  # warm-up
    for r in range(runs):
        loads.append(os.getloadavg())
        print(f"run {r + 1}/{runs}, load average {loads[-1][0]:.2f}", file=sys.stderr, flush=True)
        for case in cases:
            assert case.client is not None
            n = max(5, int(tx * case.tx_scale))
            if case.family == "relay_claim":
                prefill_outbox(cluster, _relay_rows(case, n))
            inputs = [case.make_input() for _ in range(n)]
            gc.collect()
            ticks0 = backend_ticks(case.client.backend_pid)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await run_tx(case, case.client, inputs)
            cpu1, wall1 = time.process_time(), time.perf_counter()
            case.server_ticks += backend_ticks(case.client.backend_pid) - ticks0
            case.server_tx += n
            case.cpu.append((cpu1 - cpu0) / n)
            case.wall.append((wall1 - wall0) / n)
    loads.append(os.getloadavg())
    for case in cases:
        if case.client is not None:
            await case.client.close()
            case.client = None


def relay_statements() -> dict[int, Any]:
    """The relay's own claim statement for each batch size (built by ``OutboxRelay.__init__``)."""
    engine = make_engine("postgresql+psycopg://x@127.0.0.1:1/x")
    factory = make_session_factory(engine)
    claims = {}
    for n in (1, 50):
        relay = OutboxRelay(factory, None, metrics=None, batch_size=n)  # type: ignore[arg-type]
        claims[n] = relay._claim
    return claims


# ------------------------------------------------------------------------------ report


def summarize(case: Case) -> dict[str, Any]:
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    return {
        "family": case.family,
        "batch": case.batch,
        "variant": case.variant,
        "orders_per_tx": case.orders_per_tx,
        "runs": len(case.cpu),
        "client_cpu_us_min": min(case.cpu) * 1e6,
        "client_cpu_us_median": statistics.median(case.cpu) * 1e6,
        "wall_ms_min": min(case.wall) * 1e3,
        "wall_ms_median": statistics.median(case.wall) * 1e3,
        "server_cpu_us": case.server_ticks * tick_us / case.server_tx if case.server_tx else None,
        "round_trips": case.round_trips,
        "statements": case.statements,
        "client_cpu_us_per_order_median": statistics.median(case.cpu) * 1e6 / case.orders_per_tx,
    }


TITLES = {
    "inbox_claim": "Inbox claim of N events (`inbox.claim`, its own transaction)",
    "outbox_append": "Outbox append of N rows (`outbox.append`, its own transaction)",
    "relay_claim": "Relay claim of N unsent rows (`OutboxRelay._claim`, held connection)",
    "reserve_each": "Inventory OrderPlaced, per event as today, N events in one transaction",
    "reserve_set": "Inventory OrderPlaced, set-based, N events in one transaction",
    "place_order": "Orders POST transaction (key claim, prices, order, lines, history, key record, outbox)",
}


READING = [
    "## Reading (what the figures decide)",
    "",
    "- Batch first, whatever the client: the set-based handler costs a tenth of the per-event one "
    "in client CPU and needs 8 round trips per batch instead of 254. That is the first change.",
    "- SQLAlchemy's own cost is per execute and per transaction, not per row: on the set-based "
    "handler it is paid a handful of times per batch and matters little; on the POST (one "
    "transaction per request, nine statements) it is most of the client's CPU, and swapping the "
    "driver under it (SQLAlchemy on asyncpg) removes only a small part of it.",
    "- The ORM is the most expensive everywhere; Core with statements built once is cheaper than "
    "Core building them per call (OrderRepository.add, IdempotencyKeys.claim/record do today).",
    "- Raw psycopg in pipeline mode keeps one driver (the relay's LISTEN, keepalive and lease code "
    "is psycopg's) and gives the fewest round trips (2 for the POST, 2 per batch); asyncpg is "
    "cheaper still per statement but needs a round trip per statement and a second driver.",
    "- The machine was shared: read the minima, and compare clients within one table, not across runs.",
    "",
]


def _fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _find(rows: list[dict[str, Any]], family: str, batch: int, variant: str) -> dict[str, Any] | None:
    return next(
        (r for r in rows if (r["family"], r["batch"], r["variant"]) == (family, batch, variant)), None
    )


def derived(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures the recommendation rests on, from the minimum CPU over the runs (the run the
    other work on the machine disturbed least; the medians tell the same story, noisier)."""
    out: dict[str, Any] = {}

    def row(family: str, batch: int, variant: str) -> dict[str, Any]:
        found = _find(rows, family, batch, variant)
        return found or {"client_cpu_us_min": float("nan"), "round_trips": None, "statements": None}

    def cpu(family: str, batch: int, variant: str) -> float:
        return float(row(family, batch, variant)["client_cpu_us_min"])

    # reserve_each with 50 events: 1 claim + 50 x (2 locks + 2 stock updates + 1 upsert) + 1 append.
    executes = 2 + 50 * (2 + LINES_PER_ORDER + 1)
    out["reserve_each_50_executes"] = executes
    psycopg_each = cpu("reserve_each", 50, "psycopg")
    out["sa_conn_over_psycopg_us_per_execute"] = (
        cpu("reserve_each", 50, "sa_conn") - psycopg_each
    ) / executes
    out["sa_session_over_psycopg_us_per_execute"] = (
        cpu("reserve_each", 50, "sa_session (today)") - psycopg_each
    ) / executes
    out["sa_asyncpg_over_asyncpg_us_per_execute"] = (
        cpu("reserve_each", 50, "sa_session on asyncpg") - cpu("reserve_each", 50, "asyncpg")
    ) / executes
    pipelined = row("reserve_each", 50, "psycopg_pipeline")
    plain = row("reserve_each", 50, "psycopg")
    if pipelined["round_trips"] and plain["round_trips"]:
        out["psycopg_us_per_round_trip"] = (psycopg_each - cpu("reserve_each", 50, "psycopg_pipeline")) / (
            plain["round_trips"] - pipelined["round_trips"]
        )
    out["asyncpg_us_per_statement"] = cpu("reserve_each", 50, "asyncpg") / executes
    out["session_and_pool_us_per_tx"] = cpu("inbox_claim", 1, "sa_session") - cpu("inbox_claim", 1, "sa_conn")
    out["sa_conn_over_psycopg_inbox_1_us"] = cpu("inbox_claim", 1, "sa_conn") - cpu(
        "inbox_claim", 1, "psycopg"
    )
    out["place_order_us"] = {
        r["variant"]: r["client_cpu_us_min"] for r in rows if r["family"] == "place_order"
    }
    out["orm_over_core_place_order_us"] = cpu("place_order", 1, "sa_orm") - cpu(
        "place_order", 1, "sa_session (today)"
    )
    out["prebuilt_saves_place_order_us"] = cpu("place_order", 1, "sa_session (today)") - cpu(
        "place_order", 1, "sa_session, statements built once"
    )
    out["reserve_us_per_event"] = {
        f"{family} {r['variant']}": r["client_cpu_us_min"] / 50
        for family in ("reserve_each", "reserve_set")
        for r in rows
        if r["family"] == family and r["batch"] == 50
    }
    many = row("outbox_append", 50, "sa_conn (executemany)")
    out["sa_executemany_50_rows"] = {"round_trips": many["round_trips"], "statements": many["statements"]}
    return out


def write_report(out_dir: Path, result: dict[str, Any]) -> None:
    rows = result["cases"]
    d = result["derived"]
    env = result["environment"]
    lines = [
        "# Database clients on the hot statements",
        "",
        f"Issue 11. Written by `bench/dbclients.py` on {result['date']} "
        f"({'quick' if result['quick'] else 'full'} run: {result['runs']} runs of each case, "
        "cases interleaved run by run).",
        "",
        f"PostgreSQL {env['postgres']} on 127.0.0.1 (throwaway cluster, `fsync=on`, "
        f"`synchronous_commit={env['synchronous_commit']}`), Python {env['python']}, "
        f"SQLAlchemy {env['sqlalchemy']}, psycopg {env['psycopg']} ({env['psycopg_impl']}, "
        f"libpq {env['libpq']}), asyncpg {env['asyncpg']}; {env['cpus']} cores shared with other work, "
        f"load average (1 min) during the runs {env['load_min']:.2f}–{env['load_max']:.2f}.",
        "",
        "Columns: client CPU per transaction (process CPU time, min and median over the runs); "
        "wall time per transaction (durable commit included, median); server backend CPU per "
        "transaction (over all runs; 10 ms ticks, so rough for the small cases); round trips "
        "(the client waits for the server) and statements sent, per transaction, counted on the wire.",
        "",
    ]
    for family, title in TITLES.items():
        for batch in (1, 50):
            group = [r for r in rows if r["family"] == family and r["batch"] == batch]
            if not group:
                continue
            lines += [
                f"## {title} — N = {batch}",
                "",
                "| client | CPU µs/tx min | CPU µs/tx median | "
                + ("CPU µs/event | " if batch > 1 and family.startswith("reserve") else "")
                + "wall ms/tx | server CPU µs/tx | round trips | statements |",
                "|---|---:|---:|"
                + ("---:|" if batch > 1 and family.startswith("reserve") else "")
                + "---:|---:|---:|---:|",
            ]
            for r in group:
                per_event = (
                    f" {_fmt(r['client_cpu_us_per_order_median'])} |"
                    if batch > 1 and family.startswith("reserve")
                    else ""
                )
                lines.append(
                    f"| {r['variant']} | {_fmt(r['client_cpu_us_min'])} | {_fmt(r['client_cpu_us_median'])} |"
                    f"{per_event} {_fmt(r['wall_ms_median'], 2)} | {_fmt(r['server_cpu_us'])} | "
                    f"{_fmt(r['round_trips'], 1)} | {_fmt(r['statements'], 1)} |"
                )
            lines.append("")
    many = d["sa_executemany_50_rows"]
    lines += [
        "## Derived (from the minimum CPU over the runs)",
        "",
        f"- SQLAlchemy Core over raw psycopg, per execute (reserve_each with 50 events: "
        f"{d['reserve_each_50_executes']} executes of the same statements in one transaction): "
        f"{_fmt(d['sa_conn_over_psycopg_us_per_execute'], 1)} µs on a held connection, "
        f"{_fmt(d['sa_session_over_psycopg_us_per_execute'], 1)} µs through the session as today; "
        f"over asyncpg, SQLAlchemy on the asyncpg dialect adds "
        f"{_fmt(d['sa_asyncpg_over_asyncpg_us_per_execute'], 1)} µs per execute.",
        f"- A one-statement transaction (inbox claim, N = 1): SQLAlchemy Core on a held connection costs "
        f"{_fmt(d['sa_conn_over_psycopg_inbox_1_us'])} µs more than raw psycopg; the session and the "
        f"pool's checkout and return add {_fmt(d['session_and_pool_us_per_tx'])} µs more.",
        f"- A round trip costs async psycopg about {_fmt(d.get('psycopg_us_per_round_trip'))} µs of client "
        f"CPU by itself (reserve_each, 50 events: plain − pipeline, per round trip saved); asyncpg runs "
        f"a whole statement, round trip included, for {_fmt(d['asyncpg_us_per_statement'])} µs.",
        f"- SQLAlchemy's executemany on psycopg (outbox append, 50 rows): {_fmt(many['round_trips'], 1)} "
        f"round trips per transaction with BEGIN and COMMIT, so the 50 INSERTs go in one flight "
        f"(psycopg pipelines executemany), but as {_fmt(many['statements'], 0)} statements that the "
        "server runs one by one; a RETURNING insert (the inbox claim) becomes one multi-row VALUES "
        "statement instead (insertmanyvalues).",
        f"- The ORM over today's Core for the order insert: {_fmt(d['orm_over_core_place_order_us'])} µs "
        f"per order; building the order's statements once instead of per call saves "
        f"{_fmt(d['prebuilt_saves_place_order_us'])} µs.",
        "",
        "Client CPU per order placed (POST transaction, min):",
        "",
        "| client | µs |",
        "|---|---:|",
        *[f"| {k} | {_fmt(v)} |" for k, v in d["place_order_us"].items()],
        "",
        "Client CPU per OrderPlaced event handled in a batch of 50 (min):",
        "",
        "| handler, client | µs/event |",
        "|---|---:|",
        *[f"| {k} | {_fmt(v)} |" for k, v in d["reserve_us_per_event"].items()],
        "",
        *READING,
    ]
    (out_dir / "report.md").write_text("\n".join(lines))


def environment(cluster: PostgresCluster, loads: list[tuple[float, float, float]]) -> dict[str, Any]:
    return {
        "postgres": cluster.psql("SHOW server_version").strip(),
        "synchronous_commit": cluster.psql("SHOW synchronous_commit").strip(),
        "fsync": cluster.psql("SHOW fsync").strip(),
        "python": platform.python_version(),
        "sqlalchemy": sa.__version__,
        "psycopg": psycopg.__version__,
        "psycopg_impl": psycopg.pq.__impl__,
        "libpq": psycopg.pq.version(),
        "asyncpg": asyncpg.__version__,
        "cpus": os.cpu_count(),
        "load_min": min(load[0] for load in loads),
        "load_max": max(load[0] for load in loads),
        "loads": loads,
    }


async def measure(
    args: argparse.Namespace, cluster: PostgresCluster, dbs: dict[str, Database], world: World
) -> dict[str, Any]:
    rng = random.Random(7)
    cases = build_cases(world, rng)
    if args.only:
        cases = [c for c in cases if c.family in args.only.split(",")]
    relay_claims = relay_statements()
    print(f"{len(cases)} cases: counting round trips", file=sys.stderr, flush=True)
    await count_pass(cases, dbs, cluster, relay_claims)
    loads: list[tuple[float, float, float]] = []
    await timing_pass(cases, dbs, cluster, relay_claims, runs=args.runs, tx=args.tx, loads=loads)
    rows = [summarize(c) for c in cases]
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "runs": args.runs,
        "tx_per_run_base": args.tx,
        "environment": environment(cluster, loads),
        "cases": rows,
        "derived": derived(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 runs of fewer transactions")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--tx", type=int, default=None, help="transactions per run for the N=1 cases")
    parser.add_argument("--only", default="", help="comma-separated families, e.g. place_order,relay_claim")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dbclients")
    parser.add_argument("--report-only", action="store_true", help="rewrite report.md from results.json")
    args = parser.parse_args()
    if args.report_only:
        result = json.loads((args.out / "results.json").read_text())
        result["derived"] = derived(result["cases"])
        write_report(args.out, result)
        return
    args.runs = args.runs or (2 if args.quick else 5)
    args.tx = args.tx or (60 if args.quick else 150)
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="dbclients-"))
    cluster = start_cluster(workdir)
    try:
        dbs, world = prepare_databases(cluster)  # alembic runs its own event loop
        result = asyncio.run(measure(args, cluster, dbs, world))
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    write_report(args.out, result)
    print(f"wrote {args.out / 'report.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
