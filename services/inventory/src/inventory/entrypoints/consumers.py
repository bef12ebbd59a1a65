from datetime import timedelta

from emporium_events import topics
from emporium_kit.runtime import ConsumerSpec
from inventory.config import InventorySettings
from inventory.service_layer.handlers import handlers_for


def consumers(settings: InventorySettings) -> list[ConsumerSpec]:
    return [
        ConsumerSpec(
            name="inventory",
            topics=[topics.CATALOG, topics.ORDERS],
            handlers=handlers_for(reservation_ttl=timedelta(seconds=settings.reservation_ttl_seconds)),
        )
    ]
