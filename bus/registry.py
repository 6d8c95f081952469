"""The table of backends: the one place a backend name becomes a class, imported lazily."""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from collections.abc import Callable

    from bus.port import Bus
    from bus.settings import BusSettings


@dataclass(frozen=True, slots=True)
class BackendInfo:
    name: str
    target: str
    """`module:Class`, imported only when the backend is chosen."""
    default_url: str
    schemes: tuple[str, ...]
    refused: tuple[tuple[str, str], ...] = ()
    """`(scheme, why)`: URLs a user may reasonably try that this backend does not honour;
    refused with the reason rather than connected some other way (plaintext, say)."""
    credentials: bool = True
    """Whether a user or password in the URL is honoured; False: refused, never ignored."""
    many_hosts: bool = False
    """Whether a comma-separated list of `host:port` is honoured (Kafka's bootstrap servers)."""


BACKENDS: dict[str, BackendInfo] = {
    info.name: info
    for info in (
        BackendInfo("memory", "bus.backends.memory:MemoryBus", "memory://default", ("memory",)),
        BackendInfo(
            "redis-pubsub",
            "bus.backends.redis_pubsub:RedisPubSubBus",
            "redis://127.0.0.1:6379/0",
            ("redis", "rediss", "unix"),
        ),
        BackendInfo(
            "redis-streams",
            "bus.backends.redis_streams:RedisStreamsBus",
            "redis://127.0.0.1:6379/0",
            ("redis", "rediss", "unix"),
        ),
        BackendInfo(
            "rabbitmq",
            "bus.backends.rabbitmq:RabbitMQBus",
            "amqp://guest:guest@127.0.0.1:5672/",
            ("amqp", "amqps"),
        ),
        BackendInfo(
            "kafka",
            "bus.backends.kafka:KafkaBus",
            "kafka://127.0.0.1:9092",
            ("kafka",),
            refused=(
                (
                    "kafkas",
                    "TLS to Kafka is not set up by this bus (it would connect in plaintext); "
                    "use kafka:// on a network you trust",
                ),
            ),
            credentials=False,
            many_hosts=True,
        ),
        BackendInfo("nats", "bus.backends.nats:NatsBus", "nats://127.0.0.1:4222", ("nats", "tls")),
    )
}


def backend_info(name: str) -> BackendInfo:
    try:
        return BACKENDS[name]
    except KeyError:
        close = difflib.get_close_matches(name, BACKENDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown backend {name!r}{hint} (choose from {', '.join(BACKENDS)})"
        ) from None


def backend_class(name: str) -> type[Bus]:
    module_name, _, class_name = backend_info(name).target.partition(":")
    return cast("type[Bus]", getattr(importlib.import_module(module_name), class_name))


def create_bus(settings: BusSettings | None = None) -> Bus:
    """Build the bus `BUS_BACKEND` names; nothing connects until `start()`."""
    if settings is None:
        from bus.settings import BusSettings

        settings = BusSettings()
    # Every backend class is constructed from the settings alone.
    factory = cast("Callable[[BusSettings], Bus]", backend_class(settings.backend))
    return factory(settings)
