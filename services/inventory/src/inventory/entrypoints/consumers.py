from emporium_events import topics
from emporium_kit.runtime import ConsumerSpec
from inventory.service_layer.handlers import HANDLERS

CONSUMERS = [ConsumerSpec(name="inventory", topics=[topics.CATALOG, topics.ORDERS], handlers=HANDLERS)]
