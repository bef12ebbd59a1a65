from prometheus_client import CollectorRegistry

from emporium_events import topics
from emporium_events.kafka import EventConsumer
from emporium_events.metrics import MessagingMetrics


def test_a_consumer_exposes_dead_letters_total_at_zero_for_each_of_its_topics_from_the_start():
    """A counter born at 1 hides its first increase from increase(): the first dead letter after
    a restart would not alert."""
    registry = CollectorRegistry()
    EventConsumer(
        name="c",
        bootstrap="unused:9092",
        topics=[topics.ORDERS, topics.PAYMENTS],
        handlers={},
        uow_factory=lambda: None,
        producer=None,
        metrics=MessagingMetrics.for_service("zerotest", registry),
    )
    for topic in (topics.ORDERS, topics.PAYMENTS):
        assert registry.get_sample_value("emporium_zerotest_dead_letters_total", {"topic": topic}) == 0
