"""The order saga: place the order, then follow inventory's and payments' replies.

The service's message bus runs every handler here in a unit of work and commits it; none of them
commits. Every reply is checked against the order's state, so a late or repeated reply changes
nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from emporium_events.bus import BatchHandler, one_by_one
from emporium_events.contracts import (
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    ProductCreated,
    ProductUpdated,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from emporium_events.envelope import Envelope
from orders.adapters.catalog import PricedProduct, PriceList
from orders.domain.commands import (
    CancelOrder,
    ExpireOverdue,
    ForgetIdempotencyKeys,
    IdempotencyKey,
    PlaceOrder,
)
from orders.domain.model import (
    CancelReason,
    IdempotencyKeyReused,
    Line,
    MixedCurrencies,
    Order,
    OrderNotFound,
    Outcome,
    UnknownProduct,
)
from orders.service_layer.unit_of_work import OrdersUnitOfWork


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer the entrypoint sends as is: fresh, or replayed for a repeated key."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False


Render = Callable[[Order], dict[str, Any]]


async def _replay(uow: OrdersUnitOfWork, customer_id: UUID, idem: IdempotencyKey) -> Answer | None:
    """The stored answer for this key, or None after claiming the key for this transaction.

    Claiming first makes a new key (the usual case) one statement; a concurrent request with
    the same key makes the claim wait for it, then the stored answer is read."""
    for _ in range(2):
        if await uow.idempotency.claim(customer_id=customer_id, key=idem.key, request_hash=idem.request_hash):
            return None
        prior = await uow.idempotency.find(customer_id=customer_id, key=idem.key)
        if prior is not None:
            if prior.request_hash != idem.request_hash:
                raise IdempotencyKeyReused(idem.key)
            return Answer(prior.status_code, prior.response, replayed=True)
    raise IdempotencyKeyReused(idem.key)  # claimed and released in between: treat as in use


async def _answer(
    uow: OrdersUnitOfWork, customer_id: UUID, idem: IdempotencyKey | None, answer: Answer
) -> Answer:
    if idem is not None:
        await uow.idempotency.record(
            customer_id=customer_id, key=idem.key, status_code=answer.status_code, response=answer.body
        )
    await uow.commit()
    return answer


async def place_order(
    cmd: PlaceOrder, uow: OrdersUnitOfWork, catalog: PriceList, *, saga_timeout: timedelta, render: Render
) -> Answer:
    if cmd.idempotency and (replay := await _replay(uow, cmd.customer_id, cmd.idempotency)):
        return replay
    wanted = list(dict.fromkeys(line.product_id for line in cmd.lines))
    priced = await uow.prices.get(wanted)  # our copy, kept from the catalog's events
    if unknown_here := [p for p in wanted if p not in priced]:
        priced |= await catalog.prices(unknown_here)  # not arrived yet (a brand-new product): ask
    missing = [line.product_id for line in cmd.lines if line.product_id not in priced]
    if missing:
        raise UnknownProduct(missing)
    currencies = {priced[line.product_id].currency for line in cmd.lines}
    if len(currencies) != 1:
        raise MixedCurrencies(currencies)
    lines = [
        Line(
            product_id=line.product_id,
            sku=priced[line.product_id].sku,
            name=priced[line.product_id].name,
            quantity=line.quantity,
            unit_price_cents=priced[line.product_id].price_cents,
        )
        for line in cmd.lines
    ]
    order = Order.place(
        order_id=cmd.order_id,
        customer_id=cmd.customer_id,
        customer_email=cmd.customer_email,
        lines=lines,
        currency=currencies.pop(),
        at=_now(),
        saga_timeout=saga_timeout,
        idempotency_key=cmd.idempotency.key if cmd.idempotency else None,
    )
    await uow.orders.add(order)
    uow.publish(
        OrderPlaced(
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
            payment_token=cmd.payment_token,
            placed_at=order.created_at,
            idempotency_key=order.idempotency_key,
        ),
        aggregate_id=order.id,
    )
    return await _answer(uow, cmd.customer_id, cmd.idempotency, Answer(202, render(order)))


async def cancel_order(cmd: CancelOrder, uow: OrdersUnitOfWork, *, render: Render) -> Answer:
    """The owner's or an admin's cancellation; a confirmed order is refunded and restocked."""
    if cmd.idempotency and (replay := await _replay(uow, cmd.requested_by, cmd.idempotency)):
        return replay
    order = await uow.orders.get_for_update(order_id=cmd.order_id, with_history=True)
    if order is None or (order.customer_id != cmd.requested_by and not cmd.by_admin):
        raise OrderNotFound(cmd.order_id)
    order.cancel_on_request(_now())
    await uow.orders.save(order)
    await _publish_cancelled(order, uow)
    return await _answer(uow, cmd.requested_by, cmd.idempotency, Answer(200, render(order)))


async def expire_overdue(cmd: ExpireOverdue, uow: OrdersUnitOfWork) -> int:
    """Cancel (TIMEOUT) every order whose saga outlived its deadline; returns how many."""
    now = _now()
    expired = 0
    for order_id in await uow.orders.overdue_ids(now=now, limit=cmd.limit):
        order = await uow.orders.get_for_update(order_id=order_id)
        if order is not None and order.expire(now):
            await uow.orders.save(order)
            await _publish_cancelled(order, uow)
            expired += 1
    return expired


async def forget_idempotency_keys(cmd: ForgetIdempotencyKeys, uow: OrdersUnitOfWork) -> int:
    return await uow.idempotency.purge(older_than=_now() - cmd.older_than)


async def on_stock_reserved(event: StockReserved, _: Envelope, uow: OrdersUnitOfWork) -> None:
    order = await uow.orders.get_for_update(order_id=event.order_id)
    if order is not None and order.stock_reserved(_now()):
        await uow.orders.save(order)


async def on_stock_reservation_failed(
    event: StockReservationFailed, _: Envelope, uow: OrdersUnitOfWork
) -> None:
    await _cancel(event.order_id, CancelReason.OUT_OF_STOCK, uow)


async def on_payment_failed(event: PaymentFailed, _: Envelope, uow: OrdersUnitOfWork) -> None:
    await _cancel(event.order_id, CancelReason.PAYMENT_DECLINED, uow)


async def on_payment_captured(event: PaymentCaptured, _: Envelope, uow: OrdersUnitOfWork) -> None:
    order = await uow.orders.get_for_update(order_id=event.order_id)
    if order is None:
        return
    outcome = order.payment_captured(_now())
    if outcome is Outcome.NOTHING:
        return
    await uow.orders.save(order)
    if outcome is Outcome.CANCELLED:
        await _publish_cancelled(order, uow)
        return
    uow.publish(
        OrderConfirmed(
            order_id=order.id,
            customer_id=order.customer_id,
            customer_email=order.customer_email,
            lines=_stock_lines(order),
            total_cents=order.total_cents,
            currency=order.currency,
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
    await _publish_cancelled(order, uow)


async def _publish_cancelled(order: Order, uow: OrdersUnitOfWork) -> None:
    assert order.cancel_reason is not None
    uow.publish(
        OrderCancelled(
            order_id=order.id,
            customer_id=order.customer_id,
            customer_email=order.customer_email,
            lines=_stock_lines(order),
            reason=order.cancel_reason,
            total_cents=order.total_cents,
            currency=order.currency,
        ),
        aggregate_id=order.id,
    )


def _stock_lines(order: Order) -> tuple[StockLine, ...]:
    return tuple(StockLine(product_id=li.product_id, quantity=li.quantity) for li in order.lines)


async def on_product_priced(
    event: ProductCreated | ProductUpdated, _: Envelope, uow: OrdersUnitOfWork
) -> None:
    await uow.prices.put(
        PricedProduct(
            product_id=event.product_id,
            sku=event.sku,
            name=event.name,
            price_cents=event.price_cents,
            currency=event.currency,
        )
    )


COMMANDS: dict[type, Callable[..., Awaitable[Any]]] = {
    PlaceOrder: place_order,
    CancelOrder: cancel_order,
    ExpireOverdue: expire_overdue,
    ForgetIdempotencyKeys: forget_idempotency_keys,
}

EVENTS: dict[str, BatchHandler] = {
    ProductCreated.event_type: one_by_one(on_product_priced),
    ProductUpdated.event_type: one_by_one(on_product_priced),
    StockReserved.event_type: one_by_one(on_stock_reserved),
    StockReservationFailed.event_type: one_by_one(on_stock_reservation_failed),
    PaymentCaptured.event_type: one_by_one(on_payment_captured),
    PaymentFailed.event_type: one_by_one(on_payment_failed),
    StockReleased.event_type: one_by_one(on_compensated),
    PaymentRefunded.event_type: one_by_one(on_compensated),
}
