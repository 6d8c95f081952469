"""The pluggable broker abstraction: one port (`Bus`), one module per backend.

bus = create_bus(BusSettings())          # BUS_BACKEND / BUS_URL from the environment
bus.subscribe("order_created", handle, group="billing", consumer="billing-1")
await bus.start()
await bus.publish("order_created", event)
await bus.close()
"""

from bus.port import Bus, Capabilities, Delivery, Handler
from bus.registry import BACKENDS, backend_class, create_bus
from bus.settings import BusSettings

__all__ = [
    "BACKENDS",
    "Bus",
    "BusSettings",
    "Capabilities",
    "Delivery",
    "Handler",
    "backend_class",
    "create_bus",
]
