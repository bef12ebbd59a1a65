"""Wiring: settings, provider, runtime, consumers and routes. No I/O until the app starts."""

from __future__ import annotations

from fastapi import FastAPI

from emporium_events import topics
from emporium_kit.runtime import ConsumerSpec, Runtime, create_app
from payments.adapters.provider import SandboxProvider
from payments.config import PaymentsSettings
from payments.entrypoints.http import router
from payments.service_layer.handlers import events_for
from payments.service_layer.unit_of_work import PaymentsUnitOfWork

SERVICE = "payments"


def build_app(settings: PaymentsSettings | None = None) -> FastAPI:
    settings = settings or PaymentsSettings()
    if settings.provider != "sandbox":
        raise ValueError(f"unknown payment provider {settings.provider!r} (only 'sandbox' is built in)")
    runtime: Runtime[PaymentsUnitOfWork] = Runtime(
        service=SERVICE, settings=settings, uow_class=PaymentsUnitOfWork
    )
    provider = SandboxProvider(lambda: runtime.session_factory)
    runtime.events = events_for(provider)
    runtime.consumers = [ConsumerSpec(name="payments", topics=[topics.ORDERS, topics.INVENTORY])]
    return create_app(service=SERVICE, runtime=runtime, routers=[router])
