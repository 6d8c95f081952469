"""The table of backends: the one place a backend name becomes its descriptor, and the
descriptor's code is imported, lazily, once the backend is chosen."""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING, Any, cast

from bus.backends import kafka, memory, nats, rabbitmq, redis_pubsub, redis_streams
from bus.descriptor import Admin, Backend

if TYPE_CHECKING:
    from collections.abc import Callable

    from bus.port import Bus
    from bus.settings import BusSettings

BACKENDS: dict[str, Backend] = {
    package.BACKEND.name: package.BACKEND
    for package in (memory, redis_pubsub, redis_streams, rabbitmq, kafka, nats)
}


def backend_info(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        close = difflib.get_close_matches(name, BACKENDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown backend {name!r}{hint} (choose from {', '.join(BACKENDS)})"
        ) from None


def load(target: str) -> Any:
    """The attribute `module:name` names, importing its module."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def backend_class(name: str) -> type[Bus]:
    return cast("type[Bus]", load(backend_info(name).bus))


def backend_admin(name: str) -> Admin:
    admin = load(backend_info(name).admin)
    assert isinstance(admin, Admin), f"{name}'s admin is not an Admin"
    return admin


def create_bus(settings: BusSettings | None = None) -> Bus:
    """Build the bus `BUS_BACKEND` names; nothing connects until `start()`."""
    if settings is None:
        from bus.settings import BusSettings

        settings = BusSettings()
    # Every backend class is constructed from the settings alone.
    factory = cast("Callable[[BusSettings], Bus]", backend_class(settings.backend))
    return factory(settings)
