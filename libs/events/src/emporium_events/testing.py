"""A fake unit of work for unit tests of handlers (a fake of our own port, never of Kafka)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self
from uuid import UUID

from emporium_events.contracts import Event
from emporium_events.envelope import Envelope


class FakeUnitOfWork:
    """Records what a handler published and whether it committed. Subclass to add fake repositories."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self.committed = 0
        self.causation: Envelope | None = None
        self._seen: set[tuple[str, UUID]] = set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def collect(self) -> None:
        return None

    async def commit(self) -> None:
        await self.collect()
        self.committed += 1

    async def rollback(self) -> None:
        return None

    async def claim_many(self, *, consumer: str, envelopes: Sequence[Envelope]) -> set[UUID]:
        fresh = {e.event_id for e in envelopes if (consumer, e.event_id) not in self._seen}
        self._seen |= {(consumer, event_id) for event_id in fresh}
        return fresh

    def publish(
        self,
        event: Event,
        *,
        aggregate_id: UUID | str,
        cause: Any = None,
        correlation_id: str | None = None,
    ) -> Envelope:
        self.published.append(event)
        return Envelope.wrap(event, producer="test", aggregate_id=str(aggregate_id))

    def published_types(self) -> list[str]:
        return [type(e).__name__ for e in self.published]
