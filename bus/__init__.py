"""The pluggable broker abstraction: one port (`Bus`), one package per backend.

bus = create_bus(BusSettings())          # BUS_BACKEND / BUS_URL from the environment
bus.subscribe("order_created", handle, group="billing", consumer="billing-1")
bus.subscribe_batch("order_created", handle_many, group="stats", consumer="stats-1")
await bus.start()
await bus.publish("order_created", event)
await bus.close()
"""

from bus.port import BatchHandler, Bus, Capabilities, Delivery, Handler, NotPublished, Received
from bus.registry import BACKENDS, backend_class, backend_info, create_bus
from bus.settings import BusSettings

__all__ = [
    "BACKENDS",
    "BatchHandler",
    "Bus",
    "BusSettings",
    "Capabilities",
    "Delivery",
    "Handler",
    "NotPublished",
    "Received",
    "backend_class",
    "backend_info",
    "create_bus",
]
