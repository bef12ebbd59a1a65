"""Queries the end-to-end tests make against the services' own databases."""

from __future__ import annotations


def money_moved(db, order_id: str) -> dict[str, int]:
    """What the payment provider actually did for one order: {"charge": cents, "refund": cents}."""
    rows = db(
        "payments",
        "SELECT o.kind, sum(o.amount_cents) FROM sandbox_provider_operations o "
        "JOIN payments p ON o.idempotency_key IN (p.provider_key, 'refund:' || p.order_id::text) "
        "WHERE p.order_id = :o AND o.approved GROUP BY o.kind",
        o=order_id,
    )
    return {kind: int(total) for kind, total in rows}
