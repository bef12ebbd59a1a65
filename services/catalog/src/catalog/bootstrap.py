"""Wiring: settings, runtime, routes and the error table. No I/O until the app starts."""

from __future__ import annotations

from fastapi import FastAPI

from catalog.config import CatalogSettings
from catalog.domain.model import DuplicateSku, ProductNotFound
from catalog.entrypoints.http import router
from catalog.service_layer import handlers
from catalog.service_layer.unit_of_work import CatalogUnitOfWork
from emporium_kit.edge import InvalidIds
from emporium_kit.runtime import Runtime, create_app

SERVICE = "catalog"

ERROR_STATUS = {ProductNotFound: 404, DuplicateSku: 409, InvalidIds: 422}


def build_app(settings: CatalogSettings | None = None) -> FastAPI:
    runtime = Runtime(
        service=SERVICE,
        settings=settings or CatalogSettings(),
        uow_class=CatalogUnitOfWork,
        commands=handlers.COMMANDS,
    )
    return create_app(service=SERVICE, runtime=runtime, routers=[router], error_status=ERROR_STATUS)
