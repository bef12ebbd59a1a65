"""W3C trace context carried from the outbox row, through Kafka headers, into the consumer."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import context, propagate, trace

TRACER = trace.get_tracer("emporium.events")


def current_carrier(ctx: context.Context | None = None) -> dict[str, str]:
    """The ``traceparent`` (and ``tracestate``) of ``ctx`` (default: the current context), to
    store with an outbox row."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return carrier


def context_from_carrier(carrier: dict[str, str] | None) -> context.Context:
    return propagate.extract(carrier or {})


def carrier_from_headers(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    """Trace headers of a record; a malformed one is dropped (a trace is never worth an event)."""
    carrier = {}
    for key, value in headers or ():
        if key in ("traceparent", "tracestate") and value:
            try:
                carrier[key] = value.decode("ascii")
            except UnicodeDecodeError:
                continue
    return carrier


def current_trace_id() -> str | None:
    """The current trace's id as 32 hex digits (as Jaeger shows it), or None outside a trace."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def link_to(carrier: dict[str, str]) -> trace.Link | None:
    """A span link to the span that ``carrier`` names (the producer of a record), if any."""
    span_context = trace.get_current_span(context_from_carrier(carrier)).get_span_context()
    return trace.Link(span_context) if span_context.is_valid else None
