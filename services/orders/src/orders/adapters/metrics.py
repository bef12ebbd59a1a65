"""The order saga's own Prometheus metrics, named ``emporium_orders_<noun>_<unit|total>``."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from orders.domain.model import CancelReason, SagaEnded


@dataclass(frozen=True)
class SagaMetrics:
    outcomes: Counter
    completion_seconds: Histogram
    idempotent_replays: Counter

    @classmethod
    def for_registry(cls, registry: CollectorRegistry = REGISTRY) -> SagaMetrics:
        """Built on first use (never at import), once per registry."""
        if id(registry) not in _BUILT:
            _BUILT[id(registry)] = cls._build(registry)
        return _BUILT[id(registry)]

    @classmethod
    def _build(cls, registry: CollectorRegistry) -> SagaMetrics:
        metrics = cls._declare(registry)
        # Every outcome exposed at 0 from the start: a series born at 1 hides its first increase
        # from rate() and increase(), and the first TIMEOUT after a restart would not alert.
        metrics.outcomes.labels("confirmed", "")
        for reason in CancelReason:
            metrics.outcomes.labels("cancelled", reason.value)
        return metrics

    @classmethod
    def _declare(cls, registry: CollectorRegistry) -> SagaMetrics:
        return cls(
            outcomes=Counter(
                "emporium_orders_saga_outcomes",
                "Orders that reached their first terminal status, by outcome and cancel reason.",
                ["outcome", "reason"],
                registry=registry,
            ),
            # 30 s is the completion objective (deploy/observability/prometheus) and the default
            # saga deadline: it must be a bucket boundary.
            completion_seconds=Histogram(
                "emporium_orders_saga_completion_seconds",
                "Time from placing an order to its first terminal status.",
                registry=registry,
                buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 45, 60, 120, 300),
            ),
            idempotent_replays=Counter(
                "emporium_orders_idempotent_replays",
                "Requests answered with the stored answer of their Idempotency-Key.",
                registry=registry,
            ),
        )

    def saga_ended(self, ended: SagaEnded) -> None:
        self.outcomes.labels(ended.status.value.lower(), ended.reason or "").inc()
        self.completion_seconds.observe(ended.seconds)


_BUILT: dict[int, SagaMetrics] = {}
