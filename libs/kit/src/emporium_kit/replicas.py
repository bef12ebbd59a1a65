"""One service's replicas behind one setting: base URLs taken in turn, one request at a time.

In Kubernetes a Service already spreads calls over a Deployment's pods, so one URL (the
Service's) is all a caller needs. Without a load balancer in front (the local stack with
``EMPORIUM_REPLICAS=2``, plain VMs) the setting lists the replicas instead, comma-separated:
``GATEWAY_ORDERS_URL=http://127.0.0.1:8003,http://127.0.0.1:8013``. One URL works as before.

The caller decides when to try again (see ``gateway.adapters.upstream``); this only says where:
the first try goes to the next replica in turn, and a retry of the same request to the replica
after the one that failed (not to whatever the shared turn says by then: other requests move it
while this one waits, and with two replicas that could be the failed one again).
"""

from __future__ import annotations

from collections.abc import Sequence


def parse_urls(value: str | Sequence[str]) -> tuple[str, ...]:
    """Base URLs from a comma-separated setting (or a list), without trailing slashes."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    urls = tuple(part.strip().rstrip("/") for part in parts)
    if not urls or not all(urls):
        raise ValueError(f"expected one or more comma-separated base URLs, got {value!r}")
    return urls


class RoundRobin:
    """Replicas of one service, taken in turn. ``take()`` costs an index and no allocation."""

    __slots__ = ("_next", "count", "urls")

    def __init__(self, urls: str | Sequence[str]) -> None:
        self.urls = parse_urls(urls)
        self.count = len(self.urls)
        self._next = 0

    def take(self) -> int:
        """The replica a new request starts at (then the next one's turn)."""
        first = self._next
        self._next = first + 1 if first + 1 < self.count else 0
        return first

    def url(self, first: int, attempt: int = 0) -> str:
        """Base URL for try ``attempt`` (0, 1, ...) of a request that started at ``first``:
        each retry goes to the following replica, wrapping around."""
        return self.urls[(first + attempt) % self.count]
