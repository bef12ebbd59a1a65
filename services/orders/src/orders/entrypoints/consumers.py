from emporium_events import topics
from emporium_kit.runtime import ConsumerSpec
from orders.service_layer.handlers import HANDLERS

CONSUMERS = [
    ConsumerSpec(name="orders", topics=[topics.INVENTORY, topics.PAYMENTS, topics.CATALOG], handlers=HANDLERS)
]
