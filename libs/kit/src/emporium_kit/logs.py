"""One logging setup for every process: JSON lines by default, plain text for people.

A JSON line has ``time`` (UTC, ISO 8601), ``level``, ``service``, ``logger``, ``message`` and,
where known, ``trace_id``/``span_id`` (the current span), ``request_id`` (the gateway's
``X-Request-ID``), ``order_id`` and ``exception``. ``LOG_FORMAT=text`` gives
``<time> <service> <level> <logger>: <message>`` instead (what `make run` shows).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from opentelemetry import trace

from emporium_events import correlation


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            line["trace_id"] = format(span_context.trace_id, "032x")
            line["span_id"] = format(span_context.span_id, "016x")
        if (request_id := correlation.request_id.get()) is not None:
            line["request_id"] = request_id
        if (order_id := correlation.order_id.get()) is not None:
            line["order_id"] = order_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(service: str, *, level: str = "INFO") -> None:
    """Replace the root logger's handlers with one on stdout (JSON, or text by ``LOG_FORMAT``).
    uvicorn is started with ``log_config=None`` so that its loggers go through this one too."""
    handler = logging.StreamHandler(sys.stdout)
    if os.environ.get("LOG_FORMAT", "json").strip().lower() == "text":
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # No line per request: spans and the request metrics record each one, and the access line
    # cost the gateway 2 % of its CPU (bench/results/gateway-clients/). Errors still log.
    logging.getLogger("uvicorn.access").propagate = False
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
