"""A service's message bus: the one way a use case runs.

Routes and periodic jobs build a command and call ``handle``; the consumer hands over a polled
batch of events and calls ``handle_events``. Either way the bus opens the unit of work, calls
the handler and commits once: no handler commits, and nothing else does.

Event handlers take a whole batch (``Sequence[Delivery]`` of one event type) so that the hot
ones can work set-based: one statement per table for the batch. A handler that has no reason to
(a rare event) is wrapped in ``one_by_one``, which calls it per event in the same transaction.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from opentelemetry import context

from emporium_events import correlation
from emporium_events.envelope import Envelope
from emporium_events.unit_of_work import UnitOfWork

U = TypeVar("U", bound=UnitOfWork)
E = TypeVar("E")


@dataclass(frozen=True)
class Delivery(Generic[E]):
    """One event as the consumer received it: the parsed contract, its envelope, and the trace
    context of its processing span (what the events it causes are traced under)."""

    event: E
    envelope: Envelope
    trace_context: context.Context | None = None


BatchHandler = Callable[[Sequence[Delivery[Any]], Any], Awaitable[None]]
"""``async def handler(deliveries, uow)``: every delivery is of one event type, each aggregate
appears at most once, and the handler must not commit."""


def one_by_one(handler: Callable[[Any, Envelope, Any], Awaitable[None]]) -> BatchHandler:
    """A batch handler that calls ``handler(event, envelope, uow)`` for each delivery in turn,
    each with its cause (and trace context) current, all in the batch's one transaction."""

    async def each(deliveries: Sequence[Delivery[Any]], uow: Any) -> None:
        for delivery in deliveries:
            with caused_by(uow, delivery):
                await handler(delivery.event, delivery.envelope, uow)

    each.__name__ = getattr(handler, "__name__", "each")
    return each


@contextmanager
def caused_by(uow: UnitOfWork, delivery: Delivery[Any]) -> Iterator[None]:
    """Inside: events published without an explicit cause are caused by ``delivery``, traced
    under its processing span, and the logs carry its order."""
    token = context.attach(delivery.trace_context) if delivery.trace_context is not None else None
    order = correlation.order_id.set(delivery.envelope.correlation_id)
    uow.causation = delivery.envelope
    try:
        yield
    finally:
        uow.causation = None
        correlation.order_id.reset(order)
        if token is not None:
            context.detach(token)


def waves(deliveries: Sequence[Delivery[Any]]) -> list[list[list[Delivery[Any]]]]:
    """Split a batch into waves of groups: a wave holds each aggregate at most once, a group is
    one event type of a wave (in order of first appearance). Handling the waves in order keeps
    each aggregate's events in the order they arrived, and a set-based handler never sees one
    aggregate twice."""
    depth: dict[str, int] = {}
    out: list[dict[str, list[Delivery[Any]]]] = []
    for delivery in deliveries:
        key = delivery.envelope.aggregate_id
        wave = depth.get(key, 0)
        depth[key] = wave + 1
        if wave == len(out):
            out.append({})
        out[wave].setdefault(delivery.envelope.event_type, []).append(delivery)
    return [list(groups.values()) for groups in out]


class MessageBus(Generic[U]):
    """Commands to their handlers, event types to their batch handlers, and the dependencies a
    handler may ask for by parameter name (``uow`` is always given)."""

    def __init__(
        self,
        uow_factory: Callable[[], U],
        *,
        commands: Mapping[type, Callable[..., Awaitable[Any]]] | None = None,
        events: Mapping[str, BatchHandler] | None = None,
        dependencies: Mapping[str, Any] | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        self._commands = dict(commands or {})
        self._events = dict(events or {})
        self.dependencies: dict[str, Any] = dict(dependencies or {})
        # The dependencies each handler names after (command, uow), read once: inspect is not
        # free per call.
        self._wanted = {
            handler: list(inspect.signature(handler).parameters)[2:] for handler in self._commands.values()
        }

    @property
    def event_types(self) -> set[str]:
        return set(self._events)

    def handles(self, event_type: str) -> bool:
        return event_type in self._events

    async def handle(self, command: object) -> Any:
        """Run ``command``'s handler in a unit of work and commit it; its result is returned.
        A handler that raises leaves nothing behind (the unit of work rolls back)."""
        handler = self._commands[type(command)]
        deps = self.dependencies
        async with self.uow_factory() as uow:
            result = await handler(command, uow, **{name: deps[name] for name in self._wanted[handler]})
            await uow.commit()
        return result

    async def handle_events(self, consumer: str, deliveries: Sequence[Delivery[Any]]) -> list[str]:
        """Handle a batch in one transaction: claim every event in ``consumer``'s inbox with one
        statement, hand the new ones to their handlers (``waves``), commit once. Returns each
        delivery's outcome (``handled`` or ``duplicate``). If anything raises, nothing of the
        batch is kept."""
        async with self.uow_factory() as uow:
            claimed = await uow.claim_many(consumer=consumer, envelopes=[d.envelope for d in deliveries])
            fresh, outcomes = [], []
            for delivery in deliveries:
                if delivery.envelope.event_id in claimed:
                    claimed.discard(delivery.envelope.event_id)  # the same event twice in one batch
                    fresh.append(delivery)
                    outcomes.append("handled")
                else:
                    outcomes.append("duplicate")
            for wave in waves(fresh):
                for group in wave:
                    await self._events[group[0].envelope.event_type](group, uow)
            await uow.commit()
        return outcomes
