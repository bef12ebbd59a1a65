"""The order saga: place the order, then follow inventory's and payments' replies.

The service's message bus runs every handler here in a unit of work and commits it; none of them
commits. Every reply is checked against the order's state, so a late or repeated reply changes
nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from emporium_events.bus import BatchHandler, Delivery, one_by_one
from emporium_events.contracts import (
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    ProductCreated,
    ProductUpdated,
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
        payment_token=cmd.payment_token,
        idempotency_key=cmd.idempotency.key if cmd.idempotency else None,
    )
    uow.orders.add(order)
    return await _answer(uow, cmd.customer_id, cmd.idempotency, Answer(202, render(order)))


async def cancel_order(cmd: CancelOrder, uow: OrdersUnitOfWork, *, render: Render) -> Answer:
    """The owner's or an admin's cancellation; a confirmed order is refunded and restocked."""
    if cmd.idempotency and (replay := await _replay(uow, cmd.requested_by, cmd.idempotency)):
        return replay
    order = await uow.orders.get_for_update(order_id=cmd.order_id, with_history=True)
    if order is None or (order.customer_id != cmd.requested_by and not cmd.by_admin):
        raise OrderNotFound(cmd.order_id)
    order.cancel_on_request(_now())
    uow.orders.save(order)
    return await _answer(uow, cmd.requested_by, cmd.idempotency, Answer(200, render(order)))


async def expire_overdue(cmd: ExpireOverdue, uow: OrdersUnitOfWork) -> int:
    """Cancel (TIMEOUT) every order whose saga outlived its deadline; returns how many."""
    now = _now()
    ids = await uow.orders.overdue_ids(now=now, limit=cmd.limit)
    expired = 0
    for order in (await uow.orders.get_many_for_update(order_ids=ids)).values():
        if order.expire(now):
            uow.orders.save(order)
            expired += 1
    return expired


async def forget_idempotency_keys(cmd: ForgetIdempotencyKeys, uow: OrdersUnitOfWork) -> int:
    return await uow.idempotency.purge(older_than=_now() - cmd.older_than)


# The saga's replies, a batch of one event type at a time (each order at most once). Every
# change is saved with the reply that caused it; the unit of work publishes what follows.

Step = Callable[[Order, Any, datetime], bool]


async def _apply(deliveries: Sequence[Delivery[Any]], uow: OrdersUnitOfWork, step: Step) -> None:
    """Load the batch's orders with one statement, apply ``step`` to each, save those it changed."""
    found = await uow.orders.get_many_for_update(order_ids=[d.event.order_id for d in deliveries])
    now = _now()
    for delivery in deliveries:
        order = found.get(delivery.event.order_id)
        if order is not None and step(order, delivery.event, now):
            uow.orders.save(order, cause=delivery)


async def on_stock_reserved(deliveries: Sequence[Delivery[StockReserved]], uow: OrdersUnitOfWork) -> None:
    await _apply(deliveries, uow, lambda order, _, now: order.stock_reserved(now))


async def on_stock_reservation_failed(
    deliveries: Sequence[Delivery[StockReservationFailed]], uow: OrdersUnitOfWork
) -> None:
    await _apply(deliveries, uow, lambda order, _, now: order.cancel(CancelReason.OUT_OF_STOCK.value, now))


async def on_payment_failed(deliveries: Sequence[Delivery[PaymentFailed]], uow: OrdersUnitOfWork) -> None:
    await _apply(
        deliveries, uow, lambda order, _, now: order.cancel(CancelReason.PAYMENT_DECLINED.value, now)
    )


async def on_payment_captured(deliveries: Sequence[Delivery[PaymentCaptured]], uow: OrdersUnitOfWork) -> None:
    await _apply(deliveries, uow, lambda order, _, now: order.payment_captured(now) is not Outcome.NOTHING)


def _compensated(order: Order, event: StockReleased | PaymentRefunded, now: datetime) -> bool:
    order.note("STOCK_RELEASED" if isinstance(event, StockReleased) else "PAYMENT_REFUNDED", now)
    return True


async def on_compensated(
    deliveries: Sequence[Delivery[StockReleased | PaymentRefunded]], uow: OrdersUnitOfWork
) -> None:
    await _apply(deliveries, uow, _compensated)


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
    StockReserved.event_type: on_stock_reserved,
    StockReservationFailed.event_type: on_stock_reservation_failed,
    PaymentCaptured.event_type: on_payment_captured,
    PaymentFailed.event_type: on_payment_failed,
    StockReleased.event_type: on_compensated,
    PaymentRefunded.event_type: on_compensated,
}
