"""What a log line can say it belongs to, beyond its trace: the request and the order.

Set at the edges (the HTTP middleware for the request, the consumer and the handlers for the
order) and read by the log formatter; contextvars, so each asyncio task sees its own.
"""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("emporium_request_id", default=None)
order_id: ContextVar[str | None] = ContextVar("emporium_order_id", default=None)
