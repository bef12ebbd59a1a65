"""Prometheus metrics of the messaging plumbing, named ``emporium_<service>_<noun>_<unit|total>``."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from emporium_events.contracts import ALL_EVENTS
from emporium_events.topics import topic_for


@dataclass(frozen=True)
class MessagingMetrics:
    published: Counter
    consumed: Counter
    handle_seconds: Histogram
    outbox_backlog: Gauge
    outbox_oldest_seconds: Gauge
    outbox_relay_leader: Gauge
    consumer_lag: Gauge
    consumer_assigned_partitions: Gauge
    dead_letters: Counter
    dead_letters_depth: Gauge

    @classmethod
    def for_service(cls, service: str, registry: CollectorRegistry = REGISTRY) -> MessagingMetrics:
        """One set per service and registry (a process may build its app more than once in tests)."""
        # Keyed by the registry itself, not its id(): a registry collected after one test could
        # lend its id to the next test's, which then got metrics registered in the dead one.
        key = (service, registry)
        if key not in _BUILT:
            built = _BUILT[key] = cls._build(service, registry)
            # Every event this service can publish is counted from 0: a series born at its first
            # increment hides that increment from rate() and increase() (the saga funnel's panels).
            for event in ALL_EVENTS:
                if topic_for(event.event_type) == topic_for(f"{service}."):
                    built.published.labels(topic_for(event.event_type), event.event_type)
        return _BUILT[key]

    @classmethod
    def _build(cls, service: str, registry: CollectorRegistry) -> MessagingMetrics:
        p = f"emporium_{service}"
        return cls(
            published=Counter(
                f"{p}_events_published",
                "Events relayed from the outbox to Kafka, by topic and event type.",
                ["topic", "event_type"],
                registry=registry,
            ),
            consumed=Counter(
                f"{p}_events_consumed",
                "Events taken from Kafka, by topic, event type (from the record's header; unknown if it "
                "has none) and outcome (handled, duplicate, ignored, dead_lettered).",
                ["topic", "event_type", "outcome"],
                registry=registry,
            ),
            handle_seconds=Histogram(
                f"{p}_event_handle_seconds",
                "Time to handle one event, transaction included.",
                ["topic"],
                registry=registry,
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            ),
            outbox_backlog=Gauge(
                f"{p}_outbox_backlog_events", "Outbox rows not yet published.", registry=registry
            ),
            outbox_oldest_seconds=Gauge(
                f"{p}_outbox_oldest_age_seconds",
                "Age of the oldest unpublished outbox row.",
                registry=registry,
            ),
            # 0 or 1 per process: with N replicas exactly one series of a service reads 1 (a sum
            # above 1 for long is a bug, 0 for long means nobody publishes its outbox).
            outbox_relay_leader=Gauge(
                f"{p}_outbox_relay_leader",
                "1 while this process's outbox relay holds its database's outbox lease and so alone "
                "publishes that outbox, 0 while it stands by.",
                registry=registry,
            ),
            # Kafka's own records-lag: the end of the partition the consumer can read (the last
            # stable offset under read_committed, else the high watermark) minus its position.
            consumer_lag=Gauge(
                f"{p}_consumer_lag_messages",
                "Messages of a partition not yet taken by this consumer group, as of its last poll.",
                ["group", "topic", "partition"],
                registry=registry,
            ),
            # With N replicas in one group, each holds some of the partitions; 0 means a replica
            # that consumes nothing (more replicas than partitions, or not joined yet).
            consumer_assigned_partitions=Gauge(
                f"{p}_consumer_assigned_partitions",
                "Partitions this process holds in its consumer group, as of its last poll.",
                ["group"],
                registry=registry,
            ),
            dead_letters=Counter(
                f"{p}_dead_letters",
                "Events sent to their topic's dead-letter queue.",
                ["topic"],
                registry=registry,
            ),
            dead_letters_depth=Gauge(
                f"{p}_dead_letters_depth",
                "Dead letters stored and not yet replayed.",
                registry=registry,
            ),
        )


_BUILT: dict[tuple[str, CollectorRegistry], MessagingMetrics] = {}
