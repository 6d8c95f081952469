"""FastStream's own Prometheus middleware on a bus: received/published counts, sizes, in-flight
and durations per handler, in the service's registry (`faststream_*`, see docs/metrics.md).

What it cannot see (lag, pending entries, dead letters, the inbox's duplicates) the services
add themselves (`services.runtime.metrics`, `bus.probes`).
"""

from __future__ import annotations

import importlib
from typing import Any

from prometheus_client import CollectorRegistry

from bus.port import Bus

_MIDDLEWARE = {
    "redis-pubsub": "faststream.redis.prometheus:RedisPrometheusMiddleware",
    "redis-streams": "faststream.redis.prometheus:RedisPrometheusMiddleware",
    "rabbitmq": "faststream.rabbit.prometheus:RabbitPrometheusMiddleware",
    "kafka": "faststream.kafka.prometheus:KafkaPrometheusMiddleware",
    "nats": "faststream.nats.prometheus:NatsPrometheusMiddleware",
}


def instrument(bus: Bus, registry: CollectorRegistry, *, service: str, instance: str) -> bool:
    """Add the middleware before anything subscribes; False where the bus has no FastStream
    broker (memory)."""
    from bus.backends._faststream import FastStreamBus

    target = _MIDDLEWARE.get(bus.name)
    if target is None or not isinstance(bus, FastStreamBus):
        return False
    module, _, name = target.partition(":")
    middleware: Any = getattr(importlib.import_module(module), name)
    bus._broker.add_middleware(
        middleware(registry=registry, app_name=service, custom_labels={"instance": instance})
    )
    return True
