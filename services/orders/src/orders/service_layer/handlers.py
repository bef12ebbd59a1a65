"""The order saga: place the order, then follow inventory's and payments' replies.

Event handlers run inside the consumer's inbox transaction and do not commit; ``place_order``
commits its own unit of work. Every reply is checked against the order's state, so a late or
repeated reply changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from emporium_events.contracts import (
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from emporium_events.envelope import Envelope
from orders.adapters.catalog import PriceList
from orders.domain.commands import PlaceOrder
from orders.domain.model import CancelReason, Line, MixedCurrencies, Order, UnknownProduct
from orders.service_layer.unit_of_work import OrdersUnitOfWork


def _now() -> datetime:
    return datetime.now(UTC)


async def place_order(cmd: PlaceOrder, uow: OrdersUnitOfWork, catalog: PriceList) -> Order:
    priced = await catalog.prices(line.product_id for line in cmd.lines)
    missing = [line.product_id for line in cmd.lines if line.product_id not in priced]
    if missing:
        raise UnknownProduct(missing)
    currencies = {priced[line.product_id].currency for line in cmd.lines}
    if len(currencies) != 1:
        raise MixedCurrencies(currencies)
    lines = [
        Line(
            product_id=line.product_id, sku=priced[line.product_id].sku, name=priced[line.product_id].name,
            quantity=line.quantity, unit_price_cents=priced[line.product_id].price_cents,
        )
        for line in cmd.lines
    ]
    order = Order.place(
        order_id=cmd.order_id, customer_id=cmd.customer_id, customer_email=cmd.customer_email, lines=lines,
        currency=currencies.pop(), at=_now(),
    )
    await uow.orders.add(order)
    await uow.publish(
        OrderPlaced(
            order_id=order.id, customer_id=order.customer_id, customer_email=order.customer_email,
            lines=tuple(
                OrderLine(product_id=li.product_id, sku=li.sku, quantity=li.quantity,
                          unit_price_cents=li.unit_price_cents)
                for li in order.lines
            ),
            total_cents=order.total_cents, currency=order.currency, payment_token=cmd.payment_token,
            placed_at=order.created_at,
        ),
        aggregate_id=order.id,
    )
    await uow.commit()
    return order


async def on_stock_reserved(event: StockReserved, _: Envelope, uow: OrdersUnitOfWork) -> None:
    order = await uow.orders.get_for_update(order_id=event.order_id)
    if order is not None and order.stock_reserved(_now()):
        await uow.orders.save(order)


async def on_stock_reservation_failed(event: StockReservationFailed, _: Envelope, uow: OrdersUnitOfWork) -> None:
    await _cancel(event.order_id, CancelReason.OUT_OF_STOCK, uow)


async def on_payment_failed(event: PaymentFailed, _: Envelope, uow: OrdersUnitOfWork) -> None:
    await _cancel(event.order_id, CancelReason.PAYMENT_DECLINED, uow)


async def on_payment_captured(event: PaymentCaptured, _: Envelope, uow: OrdersUnitOfWork) -> None:
    order = await uow.orders.get_for_update(order_id=event.order_id)
    if order is None or not order.payment_captured(_now()):
        return
    await uow.orders.save(order)
    await uow.publish(
        OrderConfirmed(
            order_id=order.id, customer_id=order.customer_id, customer_email=order.customer_email,
            lines=_stock_lines(order), total_cents=order.total_cents, currency=order.currency,
        ),
        aggregate_id=order.id,
    )


async def on_compensated(event: StockReleased | PaymentRefunded, _: Envelope, uow: OrdersUnitOfWork) -> None:
    order = await uow.orders.get_for_update(order_id=event.order_id)
    if order is not None:
        order.note("STOCK_RELEASED" if isinstance(event, StockReleased) else "PAYMENT_REFUNDED", _now())
        await uow.orders.save(order)


async def _cancel(order_id: UUID, reason: CancelReason, uow: OrdersUnitOfWork) -> None:
    order = await uow.orders.get_for_update(order_id=order_id)
    if order is None or not order.cancel(reason.value, _now()):
        return
    await uow.orders.save(order)
    await uow.publish(
        OrderCancelled(
            order_id=order.id, customer_id=order.customer_id, customer_email=order.customer_email,
            lines=_stock_lines(order), reason=reason.value, total_cents=order.total_cents, currency=order.currency,
        ),
        aggregate_id=order.id,
    )


def _stock_lines(order: Order) -> tuple[StockLine, ...]:
    return tuple(StockLine(product_id=li.product_id, quantity=li.quantity) for li in order.lines)


HANDLERS = {
    StockReserved.event_type: on_stock_reserved,
    StockReservationFailed.event_type: on_stock_reservation_failed,
    PaymentCaptured.event_type: on_payment_captured,
    PaymentFailed.event_type: on_payment_failed,
    StockReleased.event_type: on_compensated,
    PaymentRefunded.event_type: on_compensated,
}
