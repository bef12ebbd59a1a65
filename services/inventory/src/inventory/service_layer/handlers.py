"""Inventory's handlers. Consumers call them inside the inbox transaction (they do not commit);
the HTTP handler commits its own unit of work."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

from emporium_events.contracts import (
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    ProductCreated,
    ProductUpdated,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from emporium_events.envelope import Envelope
from emporium_events.kafka import Handler
from inventory.domain.model import (
    InsufficientStock,
    Reservation,
    ReservationStatus,
    StockItem,
    merge_lines,
    reserve_all,
)
from inventory.service_layer.unit_of_work import InventoryUnitOfWork

log = logging.getLogger(__name__)

OUT_OF_STOCK = "OUT_OF_STOCK"
DEFAULT_TTL = timedelta(seconds=60)


async def set_stock_level(product_id: UUID, on_hand: int, uow: InventoryUnitOfWork) -> StockItem:
    await uow.stock.ensure(product_id=product_id)
    item = (await uow.stock.lock(product_ids=[product_id]))[product_id]
    item.set_on_hand(on_hand)
    await uow.stock.save([item])
    await uow.commit()
    return item


async def record_product(
    event: ProductCreated | ProductUpdated, _: Envelope, uow: InventoryUnitOfWork
) -> None:
    await uow.stock.ensure(product_id=event.product_id, sku=event.sku)


async def reserve_stock(
    event: OrderPlaced, _: Envelope, uow: InventoryUnitOfWork, *, ttl: timedelta = DEFAULT_TTL
) -> None:
    if await uow.reservations.get_for_update(order_id=event.order_id) is not None:
        return  # this order was answered already (a re-published OrderPlaced with a new event id)
    wanted = merge_lines([(line.product_id, line.quantity) for line in event.lines])
    items = await uow.stock.lock(product_ids=wanted)
    try:
        reserve_all(items, wanted)
    except InsufficientStock as exc:
        await uow.reservations.save(
            Reservation(
                order_id=event.order_id, status=ReservationStatus.FAILED, lines=wanted, reason=OUT_OF_STOCK
            )
        )
        uow.publish(
            StockReservationFailed(
                order_id=event.order_id, reason=OUT_OF_STOCK, product_ids=(exc.product_id,)
            ),
            aggregate_id=event.order_id,
        )
        return
    await uow.stock.save(items.values())
    await uow.reservations.save(
        Reservation(
            order_id=event.order_id,
            status=ReservationStatus.RESERVED,
            lines=wanted,
            expires_at=datetime.now(UTC) + ttl,
        )
    )
    uow.publish(
        StockReserved(order_id=event.order_id, lines=_stock_lines(wanted)), aggregate_id=event.order_id
    )


async def commit_reservation(event: OrderConfirmed, _: Envelope, uow: InventoryUnitOfWork) -> None:
    reservation = await uow.reservations.get_for_update(order_id=event.order_id)
    if reservation is not None and reservation.status is ReservationStatus.EXPIRED:
        await _deduct_after_expiry(reservation, uow)
        return
    if reservation is None or reservation.status is not ReservationStatus.RESERVED:
        return
    await _deduct(reservation, await uow.stock.lock(product_ids=reservation.lines), uow)


async def _deduct(reservation: Reservation, items: dict[UUID, StockItem], uow: InventoryUnitOfWork) -> None:
    """The reserved quantities leave the stock for good."""
    for product_id, quantity in reservation.lines.items():
        items[product_id].commit(quantity)
    await uow.stock.save(items.values())
    reservation.status = ReservationStatus.COMMITTED
    await uow.reservations.save(reservation)


async def _deduct_after_expiry(reservation: Reservation, uow: InventoryUnitOfWork) -> None:
    """A confirmation that reached inventory after the reservation's TTL (its consumer lagged
    behind while the expiry job ran): the order is paid, so take the stock now if it is there.
    If it is not, the order was oversold: say so loudly and keep the reservation as evidence."""
    items = await uow.stock.lock(product_ids=reservation.lines)
    try:
        reserve_all(items, reservation.lines)
    except InsufficientStock as exc:
        log.error(
            "order %s confirmed after its reservation expired and the stock is gone: %s",
            reservation.order_id,
            exc,
        )
        reservation.reason = "OVERSOLD_AFTER_EXPIRY"
        await uow.reservations.save(reservation)
        return
    await _deduct(reservation, items, uow)


async def release_reservation(event: OrderCancelled, _: Envelope, uow: InventoryUnitOfWork) -> None:
    """Compensation: a held reservation is released; stock already deducted is put back."""
    reservation = await uow.reservations.get_for_update(order_id=event.order_id)
    if reservation is None:
        # Cancelled before its OrderPlaced was handled here (say, a dead letter replayed late):
        # remember it, so that OrderPlaced reserves nothing when it comes.
        await uow.reservations.save(
            Reservation(order_id=event.order_id, status=ReservationStatus.RELEASED, reason=event.reason)
        )
        return
    if reservation.status not in (ReservationStatus.RESERVED, ReservationStatus.COMMITTED):
        return
    items = await uow.stock.lock(product_ids=reservation.lines)
    for product_id, quantity in reservation.lines.items():
        if reservation.status is ReservationStatus.RESERVED:
            items[product_id].release(quantity)
        else:
            items[product_id].restock(quantity)
    await uow.stock.save(items.values())
    reservation.status = (
        ReservationStatus.RELEASED
        if reservation.status is ReservationStatus.RESERVED
        else ReservationStatus.RETURNED
    )
    await uow.reservations.save(reservation)
    uow.publish(
        StockReleased(order_id=event.order_id, lines=_stock_lines(reservation.lines)),
        aggregate_id=event.order_id,
    )


async def expire_reservations(uow: InventoryUnitOfWork, *, limit: int = 100) -> int:
    """Release held reservations whose TTL passed (their saga died or stalled); returns how many."""
    expired = 0
    for order_id in await uow.reservations.expired_ids(now=datetime.now(UTC), limit=limit):
        reservation = await uow.reservations.get_for_update(order_id=order_id)
        if reservation is None or reservation.status is not ReservationStatus.RESERVED:
            continue
        items = await uow.stock.lock(product_ids=reservation.lines)
        for product_id, quantity in reservation.lines.items():
            items[product_id].release(quantity)
        await uow.stock.save(items.values())
        reservation.status, reservation.reason = ReservationStatus.EXPIRED, "EXPIRED"
        await uow.reservations.save(reservation)
        uow.publish(
            StockReleased(order_id=order_id, lines=_stock_lines(reservation.lines)), aggregate_id=order_id
        )
        expired += 1
    if expired:
        await uow.commit()
    return expired


def _stock_lines(lines: dict[UUID, int]) -> tuple[StockLine, ...]:
    return tuple(StockLine(product_id=p, quantity=q) for p, q in lines.items())


def handlers_for(*, reservation_ttl: timedelta) -> dict[str, Handler]:
    """The consumer's handler table."""

    async def reserve(event: OrderPlaced, envelope: Envelope, uow: InventoryUnitOfWork) -> None:
        await reserve_stock(event, envelope, uow, ttl=reservation_ttl)

    return {
        ProductCreated.event_type: record_product,
        ProductUpdated.event_type: record_product,
        OrderPlaced.event_type: reserve,
        OrderConfirmed.event_type: commit_reservation,
        OrderCancelled.event_type: release_reservation,
    }
