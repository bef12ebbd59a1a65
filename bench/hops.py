"""Where one order's time goes, hop by hop, from the timestamps the services already store.

Every segment comes from a database row written on the way (outbox ``created_at`` and
``sent_at``, inbox ``processed_at`` = the consumer's transaction start, the order's history),
so measuring adds no load. All processes run on one machine, so their clocks agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import loadgen
import sqlalchemy as sa

# (segment name, from, to); a point is (database, what) looked up per order below.
SEGMENTS = (
    ("POST → OrderPlaced written (gateway, orders)", "post", "placed.created"),
    ("orders commits, its relay picks OrderPlaced up", "placed.created", "placed.sent"),
    ("Kafka → inventory starts handling", "placed.sent", "placed.inventory"),
    ("inventory reserves (until StockReserved is written)", "placed.inventory", "reserved.created"),
    ("inventory commits, its relay picks StockReserved up", "reserved.created", "reserved.sent"),
    ("Kafka → payments starts handling", "reserved.sent", "reserved.payments"),
    ("payments charges (until PaymentCaptured is written)", "reserved.payments", "captured.created"),
    ("payments commits, its relay picks PaymentCaptured up", "captured.created", "captured.sent"),
    ("Kafka → orders starts handling", "captured.sent", "captured.orders"),
    ("orders confirms (until the history row; its commit not included)", "captured.orders", "confirmed"),
)


def _rows(engine: sa.Engine, sql: str, ids: list[str], **params: str) -> list[sa.Row[Any]]:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), {"ids": ids, **params}).all()


def breakdown(dbs: Mapping[str, sa.Engine], samples: list[loadgen.Sample]) -> dict[str, Any]:
    """Per segment: p50/p99 in ms over the confirmed orders of ``samples``."""
    scheduled = {s.order_id: s.scheduled for s in samples if s.order_id}
    ids = list(scheduled)
    if not ids:
        return {}
    points: dict[str, dict[str, float]] = {oid: {"post": t} for oid, t in scheduled.items()}
    by_event: dict[str, tuple[str, str]] = {}  # event id -> (order id, name)

    def outbox(db: str, event_type: str, name: str) -> None:
        for order_id, event_id, created, sent in _rows(
            dbs[db],
            (
                "SELECT key, event_id::text, extract(epoch FROM created_at), extract(epoch FROM sent_at) "
                "FROM outbox WHERE event_type = :type AND key = ANY(:ids)"
            ),
            ids,
            type=event_type,
        ):
            points[order_id][f"{name}.created"] = float(created)
            if sent is not None:
                points[order_id][f"{name}.sent"] = float(sent)
            by_event[event_id] = (order_id, name)

    def inbox(db: str, event_type: str, name: str, consumer: str) -> None:
        wanted = [e for e, (_, n) in by_event.items() if n == name]
        for event_id, at in _rows(
            dbs[db],
            (
                "SELECT event_id::text, extract(epoch FROM processed_at) FROM inbox "
                "WHERE event_type = :type AND event_id = ANY(CAST(:ids AS uuid[]))"
            ),
            wanted,
            type=event_type,
        ):
            order_id, _ = by_event[event_id]
            points[order_id][f"{name}.{consumer}"] = float(at)

    outbox("orders", "orders.OrderPlaced", "placed")
    outbox("inventory", "inventory.StockReserved", "reserved")
    outbox("payments", "payments.PaymentCaptured", "captured")
    inbox("inventory", "orders.OrderPlaced", "placed", "inventory")
    inbox("payments", "inventory.StockReserved", "reserved", "payments")
    inbox("orders", "payments.PaymentCaptured", "captured", "orders")
    for order_id, at in _rows(
        dbs["orders"],
        (
            "SELECT order_id::text, min(extract(epoch FROM at)) FROM order_history "
            "WHERE status = 'CONFIRMED' AND order_id = ANY(CAST(:ids AS uuid[])) GROUP BY 1"
        ),
        ids,
    ):
        points[order_id]["confirmed"] = float(at)

    result: dict[str, Any] = {}
    complete = [p for p in points.values() if all(k in p for _, a, b in SEGMENTS for k in (a, b))]
    for name, start, end in SEGMENTS:
        durations = [max(0.0, p[end] - p[start]) for p in complete]
        result[name] = {
            k: v for k, v in loadgen.summary_ms(durations).items() if k in ("count", "p50", "p99")
        }
    total = [p["confirmed"] - p["post"] for p in complete]
    result["total: POST → CONFIRMED"] = {
        k: v for k, v in loadgen.summary_ms(total).items() if k in ("count", "p50", "p99")
    }
    return result


def markdown_rows(hops: dict[str, Any], row: Callable[[list[Any]], str]) -> list[str]:
    lines = [row(["segment", "p50 ms", "p99 ms"]), row(["---"] * 3)]
    lines += [row([name, s["p50"], s["p99"]]) for name, s in hops.items()]
    return lines
