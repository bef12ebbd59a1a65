from emporium_events import topics
from emporium_kit.runtime import ConsumerSpec

CONSUMERS = [ConsumerSpec(name="inventory", topics=[topics.CATALOG, topics.ORDERS])]
