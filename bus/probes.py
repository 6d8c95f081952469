"""How far behind a group is, asked of the broker itself: for metrics, at scrape time.

FastStream has no such query, so each backend's native client does it, in its package's
`admin.py` (one connection per probe, kept open between scrapes and apart from the bus's own,
so a slow broker answer never holds up a handler). Every figure is for one topic and one group:

- lag: published, not yet delivered to the group (Kafka consumer lag, Redis Streams group
  lag, RabbitMQ ready messages in `<topic>.<group>`, NATS `num_pending`, memory queue size);
- pending: delivered, not yet acknowledged (Redis pending entries, NATS `num_ack_pending`);
- stream length: Redis Streams `XLEN` of the topic;
- dead letters: entries in `dlq.<group>` (on Kafka: past the `orderbus dlq` cursor).

The table per backend is in docs/metrics.md. A figure the backend cannot give is None
(its gauge is left out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bus.registry import backend_admin
from bus.settings import BusSettings


@dataclass(frozen=True)
class Backlog:
    lag: int | None = None
    pending: int | None = None
    stream_length: int | None = None
    dead_letters: int | None = None


class Probe(Protocol):
    async def backlog(self, topic: str, group: str) -> Backlog: ...

    async def close(self) -> None: ...


def open_probe(settings: BusSettings) -> Probe:
    """The probe of `settings`' backend (its `admin.py`); it connects on the first question."""
    return backend_admin(settings.backend).probe(settings.resolved_url)


class BaseProbe:
    def __init__(self, url: str) -> None:
        self.url = url

    async def backlog(self, topic: str, group: str) -> Backlog:
        raise NotImplementedError

    async def close(self) -> None:
        pass
