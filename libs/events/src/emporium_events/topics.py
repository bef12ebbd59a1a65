"""Topic names: one per producing service's aggregate, dead letters on ``<topic>.dlq``."""

CATALOG = "catalog.events"
INVENTORY = "inventory.events"
ORDERS = "orders.events"
PAYMENTS = "payments.events"

ALL = (CATALOG, INVENTORY, ORDERS, PAYMENTS)


def topic_for(event_type: str) -> str:
    """``orders.OrderPlaced`` is published on ``orders.events``."""
    service, _, _ = event_type.partition(".")
    return f"{service}.events"


def dlq(topic: str) -> str:
    return f"{topic}.dlq"
