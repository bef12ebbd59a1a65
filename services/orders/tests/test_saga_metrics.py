from prometheus_client import CollectorRegistry

from orders.adapters.metrics import SagaMetrics
from orders.domain.model import CancelReason


def test_every_saga_outcome_is_exposed_at_zero_before_any_order_ends():
    """A counter born at 1 hides its first increase from increase(): the first TIMEOUT after a
    restart would not alert."""
    registry = CollectorRegistry()
    SagaMetrics.for_registry(registry)
    name = "emporium_orders_saga_outcomes_total"
    assert registry.get_sample_value(name, {"outcome": "confirmed", "reason": ""}) == 0
    for reason in CancelReason:
        assert registry.get_sample_value(name, {"outcome": "cancelled", "reason": reason.value}) == 0
    assert registry.get_sample_value("emporium_orders_saga_completion_seconds_count") == 0
    assert registry.get_sample_value("emporium_orders_idempotent_replays_total") == 0
