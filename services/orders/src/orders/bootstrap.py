"""Wiring: settings, catalog client, runtime, consumers, routes, error table. No I/O at import."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from emporium_kit.periodic import Periodic
from emporium_kit.runtime import Runtime, create_app
from orders.adapters.catalog import CatalogUnavailable, HttpCatalog
from orders.adapters.metrics import SagaMetrics
from orders.config import OrdersSettings
from orders.domain.model import (
    IdempotencyKeyReused,
    MixedCurrencies,
    OrderAlreadyCancelled,
    OrderNotFound,
    UnknownProduct,
)
from orders.entrypoints.consumers import CONSUMERS
from orders.entrypoints.http import render, router
from orders.entrypoints.scheduler import saga_deadline_sweep
from orders.service_layer import handlers
from orders.service_layer.unit_of_work import OrdersUnitOfWork

SERVICE = "orders"

ERROR_STATUS = {
    OrderNotFound: 404,
    UnknownProduct: 422,
    MixedCurrencies: 422,
    OrderAlreadyCancelled: 409,
    IdempotencyKeyReused: 422,
    CatalogUnavailable: 503,
}


def build_app(settings: OrdersSettings | None = None) -> FastAPI:
    settings = settings or OrdersSettings()
    SagaMetrics.for_registry()  # on /metrics from the start, every outcome at 0
    catalog = HttpCatalog(settings.catalog_url, timeout=settings.catalog_timeout_seconds)
    runtime: Runtime[OrdersUnitOfWork] = Runtime(
        service=SERVICE,
        settings=settings,
        uow_class=OrdersUnitOfWork,
        commands=handlers.COMMANDS,
        events=handlers.EVENTS,
        dependencies={
            "catalog": catalog,
            "saga_timeout": timedelta(seconds=settings.saga_timeout_seconds),
            "render": render,
        },
        consumers=CONSUMERS,
        resources=[catalog],
    )
    sweep = saga_deadline_sweep(
        runtime.bus, key_retention=timedelta(hours=settings.idempotency_retention_hours)
    )
    runtime.resources.append(Periodic("saga-deadlines", sweep, interval=settings.deadline_sweep_seconds))
    return create_app(service=SERVICE, runtime=runtime, routers=[router], error_status=ERROR_STATUS)
