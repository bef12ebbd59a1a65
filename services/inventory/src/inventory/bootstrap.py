"""Wiring: settings, runtime, consumers, routes and the error table. No I/O until the app starts."""

from __future__ import annotations

from fastapi import FastAPI

from emporium_kit.runtime import Runtime, create_app
from inventory.config import InventorySettings
from inventory.domain.model import StockBelowReserved, StockNotFound
from inventory.entrypoints.consumers import CONSUMERS
from inventory.entrypoints.http import InvalidIds, router
from inventory.service_layer.unit_of_work import InventoryUnitOfWork

SERVICE = "inventory"

ERROR_STATUS = {StockNotFound: 404, StockBelowReserved: 409, InvalidIds: 422}


def build_app(settings: InventorySettings | None = None) -> FastAPI:
    runtime = Runtime(
        service=SERVICE, settings=settings or InventorySettings(), uow_class=InventoryUnitOfWork, consumers=CONSUMERS
    )
    return create_app(service=SERVICE, runtime=runtime, routers=[router], error_status=ERROR_STATUS)
