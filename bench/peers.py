"""Two peers of the checkout saga, measured on the stack's own PostgreSQL (databases of their own).

    uv run --group bench python bench/peers.py ceiling URL [--seconds 10] [--concurrency 32]
    uv run --group bench python bench/peers.py dbos URL SYSTEM_URL [--seconds 10] [--concurrency 32]

Both run the saga Emporium runs, step for step, each step its own transaction with a durable
commit (``synchronous_commit`` as the server has it, on):

1. place the order with its lines (prices read from the product rows, never from the client);
2. reserve stock: lock the product rows (``FOR UPDATE``, in id order), raise ``reserved``, record
   the reservation;
3. charge the payment, idempotent by order id;
4. confirm the order.

- ``ceiling``: plain asyncio + psycopg 3 in one process, one connection per worker, no framework:
  what one Python process and this PostgreSQL can do at most for these four transactions.
- ``dbos``: the same four transactions as the steps of a DBOS durable workflow (DBOS 3.x,
  ``AsyncSQLAlchemyDatasource`` transactions, READ COMMITTED like the services): what a Python team
  would pick instead of Emporium's outbox, inbox and Kafka.

Workers run closed loop (the next order starts when the last one ends), ``--concurrency`` of them:
the peers are measured at their maximum throughput, not at a given rate. The product mix is the
benchmark's: ``--products`` products with deep stock, one line of quantity 1 per order.

Prints one JSON object: orders, seconds, orders_per_second, this process's CPU ms per order
(``getrusage``, every thread), latency percentiles in ms, and, with ``--postgres-pid``, the
PostgreSQL server's CPU ms per order over the same window (the postmaster and its children).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg

TICKS = os.sysconf("SC_CLK_TCK")
PRODUCTS = 10
STOCK = 10_000_000

SCHEMA = """\
DROP TABLE IF EXISTS peer_payments, peer_reservations, peer_order_lines, peer_orders, peer_products;
CREATE TABLE peer_products (
    id int PRIMARY KEY,
    price_cents bigint NOT NULL,
    currency varchar(3) NOT NULL,
    on_hand bigint NOT NULL,
    reserved bigint NOT NULL DEFAULT 0
);
CREATE TABLE peer_orders (
    id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    status text NOT NULL,
    total_cents bigint NOT NULL,
    currency varchar(3) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX peer_orders_customer ON peer_orders (customer_id);
CREATE TABLE peer_order_lines (
    order_id uuid NOT NULL REFERENCES peer_orders (id) ON DELETE CASCADE,
    product_id int NOT NULL,
    quantity int NOT NULL,
    unit_price_cents bigint NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
CREATE TABLE peer_reservations (
    order_id uuid NOT NULL,
    product_id int NOT NULL,
    quantity int NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, product_id)
);
CREATE TABLE peer_payments (
    order_id uuid PRIMARY KEY,
    amount_cents bigint NOT NULL,
    currency varchar(3) NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""

# The saga's statements, shared by both peers (psycopg placeholders; the DBOS peer binds them
# through SQLAlchemy's driver-level exec_driver_sql, so the text is the same).
PRICES = "SELECT id, price_cents, currency FROM peer_products WHERE id = ANY(%(ids)s::int[])"
INSERT_ORDER = (
    "INSERT INTO peer_orders (id, customer_id, status, total_cents, currency) "
    "VALUES (%(id)s::uuid, %(customer)s::uuid, 'PENDING', %(total)s, %(currency)s)"
)
INSERT_LINES = (
    "INSERT INTO peer_order_lines (order_id, product_id, quantity, unit_price_cents) "
    "SELECT %(id)s::uuid, * FROM unnest(%(products)s::int[], %(quantities)s::int[], %(prices)s::bigint[])"
)
LOCK_STOCK = (
    "SELECT id, on_hand - reserved FROM peer_products WHERE id = ANY(%(ids)s::int[]) ORDER BY id FOR UPDATE"
)
RESERVE = (
    "UPDATE peer_products p SET reserved = p.reserved + l.quantity "
    "FROM unnest(%(products)s::int[], %(quantities)s::int[]) AS l(product_id, quantity) "
    "WHERE p.id = l.product_id"
)
INSERT_RESERVATIONS = (
    "INSERT INTO peer_reservations (order_id, product_id, quantity, status) "
    "SELECT %(id)s::uuid, *, 'RESERVED' FROM unnest(%(products)s::int[], %(quantities)s::int[])"
)
CHARGE = (
    "INSERT INTO peer_payments (order_id, amount_cents, currency, status) "
    "SELECT id, total_cents, currency, 'CAPTURED' FROM peer_orders WHERE id = %(id)s::uuid "
    "ON CONFLICT (order_id) DO NOTHING"
)
CONFIRM = (
    "UPDATE peer_orders SET status = 'CONFIRMED', updated_at = now() "
    "WHERE id = %(id)s::uuid AND status = 'PENDING'"
)
CANCEL = "UPDATE peer_orders SET status = 'CANCELLED', updated_at = now() WHERE id = %(id)s::uuid AND status = 'PENDING'"


def plain_url(url: str) -> str:
    """A libpq URL from a SQLAlchemy one (``postgresql+psycopg://`` → ``postgresql://``)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


def prepare(url: str, products: int) -> None:
    """Fresh tables and ``products`` products with deep stock."""
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        conn.execute(SCHEMA)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO peer_products (id, price_cents, currency, on_hand) VALUES (%s, %s, 'USD', %s)",
                [(n, 500 + 37 * n, STOCK) for n in range(1, products + 1)],
            )


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(plain_url(url)) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM peer_orders WHERE status = 'CONFIRMED'), "
            "(SELECT count(*) FROM peer_payments), (SELECT count(*) FROM peer_reservations)"
        ).fetchone()
    assert row is not None
    return {"confirmed": row[0], "payments": row[1], "reservations": row[2]}


class Order:
    """One order's input: its id and customer (minted at the edge), one line of quantity 1."""

    def __init__(self, rng: random.Random, products: int) -> None:
        self.id = uuid.uuid4()
        self.customer = uuid.uuid4()
        self.products = [rng.randint(1, products)]
        self.quantities = [1]

    def params(self) -> dict[str, Any]:
        return {"id": self.id, "products": self.products, "quantities": self.quantities}


def _priced(order: dict[str, Any], rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    prices = {pid: (price, currency) for pid, price, currency in rows}
    unit = [prices[p][0] for p in order["products"]]
    return order | {
        "prices": unit,
        "total": sum(u * q for u, q in zip(unit, order["quantities"], strict=True)),
        "currency": prices[order["products"][0]][1],
    }


def _enough(order: dict[str, Any], rows: list[tuple[Any, ...]]) -> bool:
    available = dict(rows)
    return all(available.get(p, 0) >= q for p, q in zip(order["products"], order["quantities"], strict=True))


# ---------------------------------------------------------------------- the ceiling


async def ceiling_checkout(conn: psycopg.AsyncConnection[Any], order: Order) -> bool:
    """The saga's four transactions on one connection; True when the order is confirmed."""
    params = order.params() | {"customer": order.customer}
    async with conn.transaction():  # 1. place the order with its lines
        rows = await (await conn.execute(PRICES, {"ids": order.products})).fetchall()
        params = _priced(params, rows)
        await conn.execute(INSERT_ORDER, params)
        await conn.execute(INSERT_LINES, params)
    async with conn.transaction():  # 2. reserve stock under row locks
        stock = await (await conn.execute(LOCK_STOCK, {"ids": order.products})).fetchall()
        reserved = _enough(params, stock)
        if reserved:
            await conn.execute(RESERVE, params)
            await conn.execute(INSERT_RESERVATIONS, params)
    if not reserved:
        async with conn.transaction():
            await conn.execute(CANCEL, params)
        return False
    async with conn.transaction():  # 3. charge, idempotent by order id
        await conn.execute(CHARGE, params)
    async with conn.transaction():  # 4. confirm
        await conn.execute(CONFIRM, params)
    return True


async def run_ceiling(url: str, *, seconds: float, concurrency: int, products: int) -> dict[str, Any]:
    conns = [await psycopg.AsyncConnection.connect(plain_url(url)) for _ in range(concurrency)]
    try:

        def worker_for(conn: psycopg.AsyncConnection[Any]) -> Callable[[Order], Awaitable[bool]]:
            return lambda order: ceiling_checkout(conn, order)

        return await closed_loop([worker_for(c) for c in conns], seconds=seconds, products=products)
    finally:
        for conn in conns:
            await conn.close()


# ---------------------------------------------------------------------- the DBOS peer


def _dbos_params(order: Order) -> dict[str, Any]:
    # A workflow's inputs are checkpointed as JSON-able values: ids travel as text.
    return {
        "id": str(order.id),
        "customer": str(order.customer),
        "products": order.products,
        "quantities": order.quantities,
    }


async def run_dbos(
    url: str, system_url: str, *, seconds: float, concurrency: int, products: int, mode: str
) -> dict[str, Any]:
    """``mode`` "async": async workflow and AsyncSQLAlchemyDatasource transactions on the event
    loop; "sync": the plain-function API (SQLAlchemyDatasource), one thread per worker."""
    from concurrent.futures import ThreadPoolExecutor

    from dbos import DBOS, AsyncSQLAlchemyDatasource, DBOSConfig, SQLAlchemyDatasource

    config: DBOSConfig = {
        "name": "emporium-bench-peer",
        "system_database_url": plain_url(system_url),
        "sys_db_pool_size": concurrency + 4,
        # The default (cores + 4) throttles the system-database calls DBOS makes in threads.
        "max_executor_threads": concurrency + 4,
        "log_level": "WARNING",
        "enable_otlp": False,
    }
    DBOS(config=config)
    engine = {"pool_size": concurrency + 2, "max_overflow": 0}
    checkout: Callable[[Order], Awaitable[bool]]
    if mode == "async":
        adata = await AsyncSQLAlchemyDatasource.create(url, engine_kwargs=engine)

        async def arun(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
            result = await (await adata.sql_session().connection()).exec_driver_sql(sql, params)
            return [tuple(r) for r in result.fetchall()] if result.returns_rows else []

        @adata.transaction(isolation_level="READ COMMITTED")
        async def place_order_a(order: dict[str, Any]) -> dict[str, Any]:
            priced = _priced(order, await arun(PRICES, {"ids": order["products"]}))
            await arun(INSERT_ORDER, priced)
            await arun(INSERT_LINES, priced)
            return priced

        @adata.transaction(isolation_level="READ COMMITTED")
        async def reserve_stock_a(order: dict[str, Any]) -> bool:
            if not _enough(order, await arun(LOCK_STOCK, {"ids": order["products"]})):
                return False
            await arun(RESERVE, order)
            await arun(INSERT_RESERVATIONS, order)
            return True

        @adata.transaction(isolation_level="READ COMMITTED")
        async def charge_payment_a(order: dict[str, Any]) -> None:
            await arun(CHARGE, order)

        @adata.transaction(isolation_level="READ COMMITTED")
        async def confirm_order_a(order: dict[str, Any]) -> None:
            await arun(CONFIRM, order)

        @adata.transaction(isolation_level="READ COMMITTED")
        async def cancel_order_a(order: dict[str, Any]) -> None:
            await arun(CANCEL, order)

        @DBOS.workflow()
        async def checkout_a(order: dict[str, Any]) -> bool:
            priced = await place_order_a(order)
            if not await reserve_stock_a(priced):
                await cancel_order_a(priced)
                return False
            await charge_payment_a(priced)
            await confirm_order_a(priced)
            return True

        async def checkout_async(order: Order) -> bool:
            return bool(await checkout_a(_dbos_params(order)))

        checkout = checkout_async
    else:
        sdata = SQLAlchemyDatasource.create(url, engine_kwargs=engine)

        def srun(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
            result = sdata.sql_session().connection().exec_driver_sql(sql, params)
            return [tuple(r) for r in result.fetchall()] if result.returns_rows else []

        @sdata.transaction(isolation_level="READ COMMITTED")
        def place_order_s(order: dict[str, Any]) -> dict[str, Any]:
            priced = _priced(order, srun(PRICES, {"ids": order["products"]}))
            srun(INSERT_ORDER, priced)
            srun(INSERT_LINES, priced)
            return priced

        @sdata.transaction(isolation_level="READ COMMITTED")
        def reserve_stock_s(order: dict[str, Any]) -> bool:
            if not _enough(order, srun(LOCK_STOCK, {"ids": order["products"]})):
                return False
            srun(RESERVE, order)
            srun(INSERT_RESERVATIONS, order)
            return True

        @sdata.transaction(isolation_level="READ COMMITTED")
        def charge_payment_s(order: dict[str, Any]) -> None:
            srun(CHARGE, order)

        @sdata.transaction(isolation_level="READ COMMITTED")
        def confirm_order_s(order: dict[str, Any]) -> None:
            srun(CONFIRM, order)

        @sdata.transaction(isolation_level="READ COMMITTED")
        def cancel_order_s(order: dict[str, Any]) -> None:
            srun(CANCEL, order)

        @DBOS.workflow()
        def checkout_s(order: dict[str, Any]) -> bool:
            priced = place_order_s(order)
            if not reserve_stock_s(priced):
                cancel_order_s(priced)
                return False
            charge_payment_s(priced)
            confirm_order_s(priced)
            return True

        threads = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="peer-worker-")
        loop = asyncio.get_running_loop()

        async def checkout_in_thread(order: Order) -> bool:
            return bool(await loop.run_in_executor(threads, checkout_s, _dbos_params(order)))

        checkout = checkout_in_thread

    DBOS.launch()
    try:
        found = await closed_loop([checkout] * concurrency, seconds=seconds, products=products)
        found["mode"] = mode
        return found
    finally:
        DBOS.destroy(destroy_registry=True)


# ---------------------------------------------------------------------- measuring


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _tree_cpu(root: int | None) -> float:
    """CPU seconds of a process and its children (the postmaster and its backends)."""
    if root is None:
        return 0.0
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        pid = int(stat.parent.name)
        if pid == root or int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


POSTGRES_PID: int | None = None


async def closed_loop(
    workers: list[Callable[[Order], Awaitable[bool]]], *, seconds: float, products: int
) -> dict[str, Any]:
    """Each worker checks out orders back to back for ``seconds``; a short warm-up is not counted."""
    rng = random.Random(3)
    latencies: list[float] = []
    failed = 0
    counting = False
    stop_at = 0.0

    async def loop(checkout: Callable[[Order], Awaitable[bool]]) -> None:
        nonlocal failed
        while True:
            began = time.perf_counter()
            if stop_at and began >= stop_at:
                return
            ok = await checkout(Order(rng, products))
            if counting:
                latencies.append(time.perf_counter() - began)
                failed += not ok

    warm_up = min(2.0, seconds / 4)
    tasks = [asyncio.create_task(loop(w)) for w in workers]
    await asyncio.sleep(warm_up)
    counting = True
    cpu0, pg0, t0 = _process_cpu(), _tree_cpu(POSTGRES_PID), time.perf_counter()
    await asyncio.sleep(seconds)
    counting = False
    cpu1, pg1, t1 = _process_cpu(), _tree_cpu(POSTGRES_PID), time.perf_counter()
    stop_at = time.perf_counter()
    await asyncio.gather(*tasks)
    done = len(latencies)
    ordered = sorted(latencies)

    def pct(p: float) -> float | None:
        return round(ordered[min(done - 1, int(done * p))] * 1000, 2) if done else None

    found: dict[str, Any] = {
        "orders": done,
        "not_confirmed": failed,
        "seconds": round(t1 - t0, 2),
        "concurrency": len(workers),
        "orders_per_second": round(done / (t1 - t0), 1),
        "cpu_ms_per_order": {"peer process": round((cpu1 - cpu0) / max(done, 1) * 1000, 3)},
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
    }
    if POSTGRES_PID is not None:
        found["cpu_ms_per_order"]["postgresql"] = round((pg1 - pg0) / max(done, 1) * 1000, 3)
    return found


def main(argv: list[str] | None = None) -> int:
    global POSTGRES_PID
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("peer", choices=["ceiling", "dbos"])
    parser.add_argument(
        "url", help="the peer's own database (SQLAlchemy or libpq URL); its tables are replaced"
    )
    parser.add_argument("system_url", nargs="?", help="dbos: DBOS's system database")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--products", type=int, default=PRODUCTS)
    parser.add_argument("--postgres-pid", type=int, help="count this PostgreSQL server's CPU too")
    parser.add_argument("--mode", choices=["sync", "async"], default="sync", help="dbos: which API")
    args = parser.parse_args(argv)
    POSTGRES_PID = args.postgres_pid
    prepare(args.url, args.products)
    if args.peer == "ceiling":
        found = asyncio.run(
            run_ceiling(args.url, seconds=args.seconds, concurrency=args.concurrency, products=args.products)
        )
    else:
        if not args.system_url:
            parser.error("dbos needs SYSTEM_URL")
        found = asyncio.run(
            run_dbos(
                args.url,
                args.system_url,
                seconds=args.seconds,
                concurrency=args.concurrency,
                products=args.products,
                mode=args.mode,
            )
        )
    found["peer"] = args.peer
    found["rows"] = counts(args.url)
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
