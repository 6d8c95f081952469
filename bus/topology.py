"""Deleting what was declared on a broker: topics (streams, exchanges, Kafka topics), the
groups' queues and their dead-letter destinations. For tests and `orderbus demo`, which use
names of their own and must not leave them behind. The bus itself deletes only what an
ephemeral subscription declared (see `Bus.subscribe`), never a durable group's state.
"""

from __future__ import annotations

from collections.abc import Iterable

from bus.registry import backend_admin


async def remove_topology(
    backend: str, url: str, topics: Iterable[str], groups: Iterable[str]
) -> None:
    """Delete what a test declared, so the shared brokers do not fill up run after run."""
    await backend_admin(backend).remove_topology(url, list(topics), list(groups))
