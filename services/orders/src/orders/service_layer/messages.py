"""The one place where what happened to an order becomes what other services are told."""

from __future__ import annotations

from emporium_events.contracts import Event, OrderCancelled, OrderConfirmed, OrderLine, OrderPlaced, StockLine
from orders.domain.events import Cancelled, Confirmed, DomainEvent, Placed
from orders.domain.model import Order


def contract(order: Order, event: DomainEvent) -> Event:
    match event:
        case Placed(payment_token=token):
            return OrderPlaced(
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
                payment_token=token,
                placed_at=order.created_at,
                idempotency_key=order.idempotency_key,
            )
        case Confirmed():
            return OrderConfirmed(
                order_id=order.id,
                customer_id=order.customer_id,
                customer_email=order.customer_email,
                lines=_stock_lines(order),
                total_cents=order.total_cents,
                currency=order.currency,
            )
        case Cancelled(reason=reason):
            return OrderCancelled(
                order_id=order.id,
                customer_id=order.customer_id,
                customer_email=order.customer_email,
                lines=_stock_lines(order),
                reason=reason,
                total_cents=order.total_cents,
                currency=order.currency,
            )


def _stock_lines(order: Order) -> tuple[StockLine, ...]:
    return tuple(StockLine(product_id=li.product_id, quantity=li.quantity) for li in order.lines)
