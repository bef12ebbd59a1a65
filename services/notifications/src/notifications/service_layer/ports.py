"""What the handlers need from the outside world; adapters/ implements it, the tests fake it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from notifications.domain.model import Notification

TraceCarrier = dict[str, str]
"""W3C trace headers (``traceparent``, ``tracestate``) of the event that asked for a notification."""


class Notifications(Protocol):
    async def add_many(self, notifications: Sequence[tuple[Notification, TraceCarrier]]) -> int:
        """Record the notifications (each with the trace its mail joins) with one statement; one
        whose order already has a notification of its type is left out. Returns how many were
        recorded."""
        ...
