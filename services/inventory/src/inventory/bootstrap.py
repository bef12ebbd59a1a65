"""Wiring: settings, runtime and its bus, consumers, routes and the error table. No I/O until
the app starts."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from emporium_kit.edge import InvalidIds
from emporium_kit.periodic import Periodic
from emporium_kit.runtime import Runtime, create_app
from inventory.config import InventorySettings
from inventory.domain.commands import ExpireReservations
from inventory.domain.model import StockBelowReserved, StockNotFound
from inventory.entrypoints.consumers import CONSUMERS
from inventory.entrypoints.http import router
from inventory.service_layer import handlers
from inventory.service_layer.unit_of_work import InventoryUnitOfWork

SERVICE = "inventory"

ERROR_STATUS = {StockNotFound: 404, StockBelowReserved: 409, InvalidIds: 422}


def build_app(settings: InventorySettings | None = None) -> FastAPI:
    settings = settings or InventorySettings()
    runtime: Runtime[InventoryUnitOfWork] = Runtime(
        service=SERVICE,
        settings=settings,
        uow_class=InventoryUnitOfWork,
        commands=handlers.COMMANDS,
        events=handlers.events_for(reservation_ttl=timedelta(seconds=settings.reservation_ttl_seconds)),
        consumers=CONSUMERS,
    )

    async def expire() -> int:
        expired: int = await runtime.bus.handle(ExpireReservations())
        return expired

    runtime.resources.append(Periodic("reservation-expiry", expire, interval=settings.expiry_sweep_seconds))
    return create_app(service=SERVICE, runtime=runtime, routers=[router], error_status=ERROR_STATUS)
