"""Wiring: settings, mail sender, runtime, consumers and routes. No I/O until the app starts."""

from __future__ import annotations

from fastapi import FastAPI

from emporium_kit.runtime import Runtime, create_app
from notifications.adapters.mailer import SmtpSender
from notifications.config import NotificationsSettings
from notifications.entrypoints.consumers import CONSUMERS
from notifications.entrypoints.http import router
from notifications.service_layer.handlers import EVENTS
from notifications.service_layer.unit_of_work import NotificationsUnitOfWork

SERVICE = "notifications"


def build_app(settings: NotificationsSettings | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()
    runtime: Runtime[NotificationsUnitOfWork] = Runtime(
        service=SERVICE,
        settings=settings,
        uow_class=NotificationsUnitOfWork,
        events=EVENTS,
        consumers=CONSUMERS,
    )
    sender = SmtpSender(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.mail_from,
        idle_seconds=settings.smtp_idle_seconds,
        sessions=lambda: runtime.session_factory,
    )
    runtime.resources.append(sender)
    runtime.commit_hooks.append(sender.notify)  # mail goes out right after the event's commit
    return create_app(service=SERVICE, runtime=runtime, routers=[router])
