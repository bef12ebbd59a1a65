"""W3C trace context carried from the outbox row, through Kafka headers, into the consumer."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import context, propagate, trace

TRACER = trace.get_tracer("emporium.events")


def current_carrier() -> dict[str, str]:
    """The current ``traceparent`` (and ``tracestate``), to store with an outbox row."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from_carrier(carrier: dict[str, str] | None) -> context.Context:
    return propagate.extract(carrier or {})


def carrier_from_headers(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: v.decode() for k, v in headers or () if k in ("traceparent", "tracestate") and v}
