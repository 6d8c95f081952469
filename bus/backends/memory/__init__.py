"""The embedded default: the bus inside one process, nothing to install (`bus.py`)."""

from bus.descriptor import Backend
from bus.port import Capabilities

BACKEND = Backend(
    name="memory",
    default_url="memory://default",
    schemes=("memory",),
    capabilities=Capabilities(
        fan_out=True,
        competing_consumers=True,
        offline_catch_up=False,
        redelivery=True,
        per_key_ordering=False,
        ordering="per group, with one consumer",
    ),
    bus="bus.backends.memory.bus:MemoryBus",
    admin="bus.backends.memory.admin:ADMIN",
)
