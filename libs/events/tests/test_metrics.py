from prometheus_client import CollectorRegistry

from emporium_events import topics
from emporium_events.bus import MessageBus, one_by_one
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
        bus=MessageBus(lambda: None),
        producer=None,
        metrics=MessagingMetrics.for_service("zerotest", registry),
    )
    for topic in (topics.ORDERS, topics.PAYMENTS):
        assert registry.get_sample_value("emporium_zerotest_dead_letters_total", {"topic": topic}) == 0


def test_every_event_a_service_publishes_is_counted_from_zero_and_no_other():
    registry = CollectorRegistry()
    MessagingMetrics.for_service("inventory", registry)
    published = {
        s.labels["event_type"]: s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == "emporium_inventory_events_published_total"
    }

    assert published == {
        "inventory.StockReserved": 0,
        "inventory.StockReservationFailed": 0,
        "inventory.StockReleased": 0,
    }


def test_a_consumer_counts_each_event_type_it_handles_from_zero_on_that_events_topic():
    registry = CollectorRegistry()

    async def handle(event, envelope, uow) -> None: ...

    EventConsumer(
        name="payments",
        bootstrap="unused:9092",
        topics=[topics.ORDERS, topics.INVENTORY],
        bus=MessageBus(
            lambda: None,
            events={"orders.OrderPlaced": one_by_one(handle), "inventory.StockReserved": one_by_one(handle)},
        ),
        producer=None,
        metrics=MessagingMetrics.for_service("zerotest2", registry),
    )
    handled = {
        (s.labels["topic"], s.labels["event_type"]): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == "emporium_zerotest2_events_consumed_total"
    }

    assert handled == {
        (topics.ORDERS, "orders.OrderPlaced"): 0,
        (topics.INVENTORY, "inventory.StockReserved"): 0,
    }


def test_a_process_reports_that_its_relay_does_not_hold_the_outbox_lease_until_it_takes_it():
    registry = CollectorRegistry()
    MessagingMetrics.for_service("leasetest", registry)
    assert registry.get_sample_value("emporium_leasetest_outbox_relay_leader") == 0
