"""FastStream's own Prometheus middleware on a bus: received/published counts, sizes, in-flight
and durations per handler, in the service's registry (`faststream_*`, see docs/metrics.md).

What it cannot see (lag, pending entries, dead letters, the inbox's duplicates) the services
add themselves (`services.runtime.metrics`, `bus.probes`).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from bus.port import Bus
from bus.registry import backend_info, load


def instrument(bus: Bus, registry: CollectorRegistry, *, service: str, instance: str) -> bool:
    """Add the middleware before anything subscribes; False where the bus has no FastStream
    broker (memory)."""
    from bus.backends._faststream import FastStreamBus

    target = backend_info(bus.name).metrics
    if target is None or not isinstance(bus, FastStreamBus):
        return False
    middleware: Any = load(target)
    bus._broker.add_middleware(
        middleware(registry=registry, app_name=service, custom_labels={"instance": instance})
    )
    return True
