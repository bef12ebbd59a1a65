"""Inventory's handlers, run by its message bus (which opens the unit of work and commits it).

The event handlers take a batch of one event type (each order at most once) and work
set-based: one read and one write per table for the whole batch, whatever its size.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from emporium_events.bus import BatchHandler, Delivery, one_by_one
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
from inventory.domain.commands import ExpireReservations, SetStockLevel
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


async def set_stock_level(cmd: SetStockLevel, uow: InventoryUnitOfWork) -> StockItem:
    await uow.stock.ensure(product_id=cmd.product_id)
    item = (await uow.stock.lock(product_ids=[cmd.product_id]))[cmd.product_id]
    item.set_on_hand(cmd.on_hand)
    await uow.stock.save([item])
    return item


async def record_product(
    event: ProductCreated | ProductUpdated, _: Envelope, uow: InventoryUnitOfWork
) -> None:
    await uow.stock.ensure(product_id=event.product_id, sku=event.sku)


async def reserve_stock(
    deliveries: Sequence[Delivery[OrderPlaced]], uow: InventoryUnitOfWork, *, ttl: timedelta = DEFAULT_TTL
) -> None:
    """Reserve every line of each order, or none of an order's lines; orders already answered
    (a re-published OrderPlaced with a new event id, or one cancelled first) are skipped."""
    known = await uow.reservations.get_many_for_update(order_ids=[d.event.order_id for d in deliveries])
    new = [d for d in deliveries if d.event.order_id not in known]
    if not new:
        return
    wanted = {
        d.event.order_id: merge_lines([(li.product_id, li.quantity) for li in d.event.lines]) for d in new
    }
    items = await uow.stock.lock(product_ids=_products(wanted.values()))
    expires_at = datetime.now(UTC) + ttl
    reservations: list[Reservation] = []
    changed: set[UUID] = set()
    for delivery in new:  # in the order they came: the first order gets the last unit
        order_id, lines = delivery.event.order_id, wanted[delivery.event.order_id]
        try:
            reserve_all(items, lines)
        except InsufficientStock as exc:
            reservations.append(
                Reservation(
                    order_id=order_id, status=ReservationStatus.FAILED, lines=lines, reason=OUT_OF_STOCK
                )
            )
            uow.publish(
                StockReservationFailed(order_id=order_id, reason=OUT_OF_STOCK, product_ids=(exc.product_id,)),
                aggregate_id=order_id,
                cause=delivery,
            )
            continue
        changed.update(lines)
        reservations.append(
            Reservation(
                order_id=order_id, status=ReservationStatus.RESERVED, lines=lines, expires_at=expires_at
            )
        )
        uow.publish(
            StockReserved(order_id=order_id, lines=_stock_lines(lines)), aggregate_id=order_id, cause=delivery
        )
    await uow.stock.save(items[p] for p in changed)
    await uow.reservations.save_many(reservations)


async def commit_reservations(
    deliveries: Sequence[Delivery[OrderConfirmed]], uow: InventoryUnitOfWork
) -> None:
    """The reserved quantities of each confirmed order leave the stock for good."""
    known = await uow.reservations.get_many_for_update(order_ids=[d.event.order_id for d in deliveries])
    held = [r for r in known.values() if r.status in (ReservationStatus.RESERVED, ReservationStatus.EXPIRED)]
    items = await uow.stock.lock(product_ids=_products(r.lines for r in held))
    changed: set[UUID] = set()
    for reservation in held:
        if reservation.status is ReservationStatus.EXPIRED and not _retake(reservation, items):
            continue
        for product_id, quantity in reservation.lines.items():
            items[product_id].commit(quantity)
        reservation.status = ReservationStatus.COMMITTED
        changed.update(reservation.lines)
    await uow.stock.save(items[p] for p in changed)
    await uow.reservations.save_many(held)


def _retake(reservation: Reservation, items: dict[UUID, StockItem]) -> bool:
    """A confirmation that reached inventory after the reservation's TTL (its consumer lagged
    behind while the expiry job ran): the order is paid, so take the stock now if it is there.
    If it is not, the order was oversold: say so loudly and keep the reservation as evidence."""
    try:
        reserve_all(items, reservation.lines)
    except InsufficientStock as exc:
        log.error(
            "order %s confirmed after its reservation expired and the stock is gone: %s",
            reservation.order_id,
            exc,
        )
        reservation.reason = "OVERSOLD_AFTER_EXPIRY"
        return False
    return True


async def release_reservations(
    deliveries: Sequence[Delivery[OrderCancelled]], uow: InventoryUnitOfWork
) -> None:
    """Compensation: a held reservation is released; stock already deducted is put back."""
    known = await uow.reservations.get_many_for_update(order_ids=[d.event.order_id for d in deliveries])
    open_ = {
        oid: r
        for oid, r in known.items()
        if r.status in (ReservationStatus.RESERVED, ReservationStatus.COMMITTED)
    }
    items = await uow.stock.lock(product_ids=_products(r.lines for r in open_.values()))
    saved: list[Reservation] = []
    changed: set[UUID] = set()
    for delivery in deliveries:
        order_id = delivery.event.order_id
        if order_id not in known:
            # Cancelled before its OrderPlaced was handled here (say, a dead letter replayed
            # late): remember it, so that OrderPlaced reserves nothing when it comes.
            saved.append(
                Reservation(
                    order_id=order_id, status=ReservationStatus.RELEASED, reason=delivery.event.reason
                )
            )
            continue
        reservation = open_.get(order_id)
        if reservation is None:
            continue
        held = reservation.status is ReservationStatus.RESERVED
        for product_id, quantity in reservation.lines.items():
            if held:
                items[product_id].release(quantity)
            else:
                items[product_id].restock(quantity)
        reservation.status = ReservationStatus.RELEASED if held else ReservationStatus.RETURNED
        saved.append(reservation)
        changed.update(reservation.lines)
        uow.publish(
            StockReleased(order_id=order_id, lines=_stock_lines(reservation.lines)),
            aggregate_id=order_id,
            cause=delivery,
        )
    await uow.stock.save(items[p] for p in changed)
    await uow.reservations.save_many(saved)


async def expire_reservations(cmd: ExpireReservations, uow: InventoryUnitOfWork) -> int:
    """Release held reservations whose TTL passed (their saga died or stalled); returns how many."""
    ids = await uow.reservations.expired_ids(now=datetime.now(UTC), limit=cmd.limit)
    known = await uow.reservations.get_many_for_update(order_ids=ids)
    expired = [r for r in known.values() if r.status is ReservationStatus.RESERVED]
    items = await uow.stock.lock(product_ids=_products(r.lines for r in expired))
    for reservation in expired:
        for product_id, quantity in reservation.lines.items():
            items[product_id].release(quantity)
        reservation.status, reservation.reason = ReservationStatus.EXPIRED, "EXPIRED"
        uow.publish(
            StockReleased(order_id=reservation.order_id, lines=_stock_lines(reservation.lines)),
            aggregate_id=reservation.order_id,
        )
    await uow.stock.save(items[p] for r in expired for p in r.lines)
    await uow.reservations.save_many(expired)
    return len(expired)


def _products(lines: Iterable[dict[UUID, int]]) -> set[UUID]:
    return {product_id for each in lines for product_id in each}


def _stock_lines(lines: dict[UUID, int]) -> tuple[StockLine, ...]:
    return tuple(StockLine(product_id=p, quantity=q) for p, q in lines.items())


COMMANDS: dict[type, Callable[..., Awaitable[Any]]] = {
    SetStockLevel: set_stock_level,
    ExpireReservations: expire_reservations,
}


def events_for(*, reservation_ttl: timedelta) -> dict[str, BatchHandler]:
    """The bus's event handlers."""

    async def reserve(deliveries: Sequence[Delivery[OrderPlaced]], uow: InventoryUnitOfWork) -> None:
        await reserve_stock(deliveries, uow, ttl=reservation_ttl)

    return {
        ProductCreated.event_type: one_by_one(record_product),
        ProductUpdated.event_type: one_by_one(record_product),
        OrderPlaced.event_type: reserve,
        OrderConfirmed.event_type: commit_reservations,
        OrderCancelled.event_type: release_reservations,
    }
