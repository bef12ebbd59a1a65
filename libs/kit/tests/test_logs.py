"""Log lines: JSON with the trace, request and order they belong to; plain text on request."""

import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from emporium_events import correlation
from emporium_kit.logs import JsonFormatter


def _record(message: str, *, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("orders.handlers", logging.WARNING, __file__, 1, message, (), exc_info)


def test_a_json_line_names_the_service_level_and_message_and_nothing_unknown():
    line = json.loads(JsonFormatter("orders").format(_record("stock is low")))

    assert line["service"] == "orders" and line["level"] == "WARNING" and line["message"] == "stock is low"
    assert line["logger"] == "orders.handlers" and line["time"].endswith("+00:00")
    assert not {"trace_id", "span_id", "request_id", "order_id", "exception"} & line.keys()


def test_a_json_line_inside_a_span_carries_its_trace_request_and_order():
    tracer = TracerProvider().get_tracer("test")
    request_token = correlation.request_id.set("req-1")
    order_token = correlation.order_id.set("7b96912c-8cae-4150-9d1e-8267acdeef08")
    try:
        with tracer.start_as_current_span("work") as span:
            line = json.loads(JsonFormatter("orders").format(_record("placed")))
            ids = span.get_span_context()
    finally:
        correlation.order_id.reset(order_token)
        correlation.request_id.reset(request_token)

    assert line["trace_id"] == format(ids.trace_id, "032x")
    assert line["span_id"] == format(ids.span_id, "016x")
    assert line["request_id"] == "req-1" and line["order_id"] == "7b96912c-8cae-4150-9d1e-8267acdeef08"


def test_an_exception_is_one_field_of_the_one_line():
    try:
        raise ValueError("bad payload")
    except ValueError as exc:
        text = JsonFormatter("payments").format(_record("dead-lettering", exc=exc))

    assert "\n" not in text
    assert "ValueError: bad payload" in json.loads(text)["exception"]
