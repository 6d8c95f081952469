"""What a backend is, in one record: its name, its URLs, its guarantees and where its code is.

Each backend is one package, `bus/backends/<name>/`, whose `__init__` holds its descriptor
(`BACKEND`) and nothing else; `bus.registry` lists them in its one table. The code is named by
`module:attribute` and imported only once the backend is chosen, so importing `bus` (or
asking what a backend guarantees) loads no broker client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bus.port import Capabilities

if TYPE_CHECKING:
    from bus.dead_letters import DeadLetterStore
    from bus.probes import Probe


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    """`BUS_BACKEND`'s value."""
    default_url: str
    schemes: tuple[str, ...]
    capabilities: Capabilities
    bus: str
    """`module:Class` of its `Bus`."""
    admin: str
    """`module:attribute` of its `Admin`: the broker-side tools that are not the bus."""
    metrics: str | None = None
    """`module:Class` of FastStream's Prometheus middleware for it; None where the bus has no
    FastStream broker (memory)."""
    refused: tuple[tuple[str, str], ...] = ()
    """`(scheme, why)`: URLs a user may reasonably try that this backend does not honour;
    refused with the reason rather than connected some other way (plaintext, say)."""
    credentials: bool = True
    """Whether a user or password in the URL is honoured; False: refused, never ignored."""
    many_hosts: bool = False
    """Whether a comma-separated list of `host:port` is honoured (Kafka's bootstrap servers)."""


@dataclass(frozen=True, slots=True)
class Admin:
    """A backend's side that is not the bus, each on the broker's own client (FastStream can
    publish and consume, not browse a queue or measure a group): each takes the broker URL."""

    probe: Callable[[str], Probe]
    """How far behind a group is (`bus.probes`)."""
    dead_letters: Callable[[str], DeadLetterStore]
    """Listing, removing and purging `dlq.<group>` (`bus.dead_letters`)."""
    remove_topology: Callable[[str, Sequence[str], Sequence[str]], Awaitable[None]]
    """`(url, topics, groups)`: deletes what the bus declared for them (`bus.topology`)."""
