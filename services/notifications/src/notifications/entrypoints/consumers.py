from emporium_events import topics
from emporium_kit.runtime import ConsumerSpec

CONSUMERS = [ConsumerSpec(name="notifications", topics=[topics.ORDERS])]
