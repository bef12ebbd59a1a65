from emporium_events import topics
from emporium_kit.runtime import ConsumerSpec

CONSUMERS = [ConsumerSpec(name="orders", topics=[topics.INVENTORY, topics.PAYMENTS, topics.CATALOG])]
