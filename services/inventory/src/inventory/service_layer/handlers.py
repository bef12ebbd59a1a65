"""Inventory's handlers. Consumers call them inside the inbox transaction (they do not commit);
the HTTP handler commits its own unit of work."""

from __future__ import annotations

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
from inventory.domain.model import (
    InsufficientStock,
    Reservation,
    ReservationStatus,
    StockItem,
    merge_lines,
    reserve_all,
)
from inventory.service_layer.unit_of_work import InventoryUnitOfWork

OUT_OF_STOCK = "OUT_OF_STOCK"


async def set_stock_level(product_id: UUID, on_hand: int, uow: InventoryUnitOfWork) -> StockItem:
    await uow.stock.ensure(product_id=product_id)
    item = (await uow.stock.lock(product_ids=[product_id]))[product_id]
    item.set_on_hand(on_hand)
    await uow.stock.save([item])
    await uow.commit()
    return item


async def record_product(event: ProductCreated | ProductUpdated, _: Envelope, uow: InventoryUnitOfWork) -> None:
    await uow.stock.ensure(product_id=event.product_id, sku=event.sku)


async def reserve_stock(event: OrderPlaced, _: Envelope, uow: InventoryUnitOfWork) -> None:
    if await uow.reservations.get_for_update(order_id=event.order_id) is not None:
        return  # this order was answered already (a re-published OrderPlaced with a new event id)
    wanted = merge_lines([(line.product_id, line.quantity) for line in event.lines])
    items = await uow.stock.lock(product_ids=wanted)
    try:
        reserve_all(items, wanted)
    except InsufficientStock as exc:
        await uow.reservations.save(
            Reservation(order_id=event.order_id, status=ReservationStatus.FAILED, lines=wanted, reason=OUT_OF_STOCK)
        )
        await uow.publish(
            StockReservationFailed(order_id=event.order_id, reason=OUT_OF_STOCK, product_ids=(exc.product_id,)),
            aggregate_id=event.order_id,
        )
        return
    await uow.stock.save(items.values())
    await uow.reservations.save(Reservation(order_id=event.order_id, status=ReservationStatus.RESERVED, lines=wanted))
    await uow.publish(StockReserved(order_id=event.order_id, lines=_stock_lines(wanted)), aggregate_id=event.order_id)


async def commit_reservation(event: OrderConfirmed, _: Envelope, uow: InventoryUnitOfWork) -> None:
    reservation = await uow.reservations.get_for_update(order_id=event.order_id)
    if reservation is None or reservation.status is not ReservationStatus.RESERVED:
        return
    items = await uow.stock.lock(product_ids=reservation.lines)
    for product_id, quantity in reservation.lines.items():
        items[product_id].commit(quantity)
    await uow.stock.save(items.values())
    reservation.status = ReservationStatus.COMMITTED
    await uow.reservations.save(reservation)


async def release_reservation(event: OrderCancelled, _: Envelope, uow: InventoryUnitOfWork) -> None:
    """Compensation: a held reservation is released; stock already deducted is put back."""
    reservation = await uow.reservations.get_for_update(order_id=event.order_id)
    if reservation is None or reservation.status not in (ReservationStatus.RESERVED, ReservationStatus.COMMITTED):
        return
    items = await uow.stock.lock(product_ids=reservation.lines)
    for product_id, quantity in reservation.lines.items():
        if reservation.status is ReservationStatus.RESERVED:
            items[product_id].release(quantity)
        else:
            items[product_id].restock(quantity)
    await uow.stock.save(items.values())
    reservation.status = (
        ReservationStatus.RELEASED if reservation.status is ReservationStatus.RESERVED else ReservationStatus.RETURNED
    )
    await uow.reservations.save(reservation)
    await uow.publish(
        StockReleased(order_id=event.order_id, lines=_stock_lines(reservation.lines)), aggregate_id=event.order_id
    )


def _stock_lines(lines: dict[UUID, int]) -> tuple[StockLine, ...]:
    return tuple(StockLine(product_id=p, quantity=q) for p, q in lines.items())


HANDLERS = {
    ProductCreated.event_type: record_product,
    ProductUpdated.event_type: record_product,
    OrderPlaced.event_type: reserve_stock,
    OrderConfirmed.event_type: commit_reservation,
    OrderCancelled.event_type: release_reservation,
}
