"""In-process bus: the embedded default, for one process, no broker to run.

URL: `memory://NAME` (default `memory://default`); buses with the same name in one process
share topics, so replicas started in one process compete and services fan out.

| feature | |
|---|---|
| fan-out across groups | yes: each group has its own queue |
| competing consumers | yes: consumers of a group take from its queue |
| offline catch-up | no: a group exists only while one of its consumers runs |
| redelivery | in-process only: a handler that raises gets the event again; nothing |
|            | survives the process |
| ordering | per group with one consumer |

Each group queue is bounded (`BUS_MEMORY_QUEUE_SIZE`): a publisher waits when it is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import urlsplit

from bus import names
from bus.codec import PoisonMessage, decode, encode
from bus.port import Capabilities, Delivery, Handler
from bus.settings import BusSettings
from contracts.envelope import CloudEvent

log = logging.getLogger(__name__)


@dataclass
class _Group:
    queue: asyncio.Queue[tuple[bytes, int]]
    consumers: int = 0


@dataclass
class _Hub:
    """Topics of one `memory://NAME`: topic -> group -> queue of (encoded event, attempt)."""

    topics: dict[str, dict[str, _Group]] = field(default_factory=dict)


_HUBS: dict[str, _Hub] = {}


@dataclass(frozen=True)
class _Subscription:
    topic: str
    group: str
    consumer: str
    handler: Handler


class MemoryBus:
    name: ClassVar[str] = "memory"
    capabilities: ClassVar[Capabilities] = Capabilities(
        fan_out=True,
        competing_consumers=True,
        offline_catch_up=False,
        redelivery=True,
        per_key_ordering=False,
        ordering="per group, with one consumer",
    )

    def __init__(self, settings: BusSettings) -> None:
        self._settings = settings
        self._hub = _HUBS.setdefault(urlsplit(settings.resolved_url).netloc or "default", _Hub())
        self._subscriptions: list[_Subscription] = []
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        self._joined: list[_Group] = []
        self._closing = False

    async def publish(self, topic: str, event: CloudEvent) -> None:
        body = encode(event, self._settings.max_event_bytes)
        for group in list(self._hub.topics.get(names.check_topic(topic), {}).values()):
            await group.queue.put((body, 1))
        log.debug("published %s %s to %s", event.type, event.id, topic)

    def subscribe(self, topic: str, handler: Handler, *, group: str, consumer: str) -> None:
        self._subscriptions.append(
            _Subscription(
                names.check_topic(topic),
                names.check_group(group),
                names.check_consumer(consumer),
                handler,
            )
        )

    async def start(self) -> None:
        for sub in self._subscriptions:
            groups = self._hub.topics.setdefault(sub.topic, {})
            group = groups.get(sub.group)
            if group is None:
                group = groups[sub.group] = _Group(asyncio.Queue(self._settings.memory_queue_size))
            group.consumers += 1
            self._joined.append(group)
            self._workers.append(asyncio.create_task(self._consume(sub, group)))

    async def _consume(self, sub: _Subscription, group: _Group) -> None:
        me = asyncio.current_task()
        assert me is not None
        while not self._closing:
            # Queue.get is cancel-safe: close() cancels only idle workers, losing nothing.
            body, attempt = await group.queue.get()
            self._busy.add(me)
            try:
                event = decode(body, self._settings.max_event_bytes)
                await sub.handler(event, Delivery(sub.topic, sub.group, sub.consumer, attempt))
            except PoisonMessage:
                log.exception("dropped a poison message on %s/%s", sub.topic, sub.group)
            except Exception:  # noqa: BLE001 - any handler failure means "deliver again"
                log.warning("handler failed on %s/%s; redelivering", sub.topic, sub.group)
                await group.queue.put((body, attempt + 1))
            finally:
                self._busy.discard(me)
            # Queue.get does not yield while events wait; without this one consumer of a
            # group would take them all and its peers would never compete.
            await asyncio.sleep(0)

    async def ping(self) -> bool:
        return True  # in-process: there is nothing to be unreachable

    async def close(self) -> None:
        """Stop taking events, let handlers in flight finish, then leave the groups."""
        self._closing = True
        for worker in self._workers:
            if worker not in self._busy:
                worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        for sub, group in zip(self._subscriptions, self._joined, strict=False):
            group.consumers -= 1
            if group.consumers == 0:
                # No consumer left: the group goes, and with it what it had not taken.
                self._hub.topics[sub.topic].pop(sub.group, None)
        self._workers.clear()
        self._joined.clear()
