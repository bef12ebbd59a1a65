from emporium_events import topics
from emporium_kit.runtime import ConsumerSpec
from notifications.service_layer.handlers import HANDLERS

CONSUMERS = [ConsumerSpec(name="notifications", topics=[topics.ORDERS], handlers=HANDLERS)]
