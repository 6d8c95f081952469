"""In-process bus: the embedded default, for one process, no broker to run.

URL: `memory://NAME` (default `memory://default`); buses with the same name in one process
share topics, so replicas started in one process compete and services fan out.

| feature | |
|---|---|
| fan-out across groups | yes: each group has its own queue |
| competing consumers | yes: consumers of a group take from its queue |
| offline catch-up | no: a group exists only while one of its consumers runs |
| redelivery | in-process only: a failed event is requeued after a backoff; nothing |
|            | survives the process. Dead letters are kept in memory (`dead_letters()`) |
| ordering | per group with one consumer |

Each group queue is bounded (`BUS_MEMORY_QUEUE_SIZE`): a publisher waits when it is full. A
consumer takes up to `BUS_PREFETCH` queued events at a time, but no more than its share of
what waits among the group's consumers, and hands them to the delivery pipeline
(`bus.pipeline`), as a broker's consumer hands over what it fetched.

An event is encoded once when published, as for a broker (the size bound, and the bytes a
dead letter keeps), and decoded once, by the first group that takes it: the groups share the
decoded `CloudEvent`, which is frozen. An event published with the bytes it was decoded from
(`publish_many(stored=...)`, as the outbox relay does) is not decoded again: the groups share
the publisher's, which is what decoding would give. Handlers treat an event as a value and
never change its `data` in place (the services validate it into models of their own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import urlsplit

from bus import names, tracing
from bus.backends.memory import BACKEND
from bus.codec import decode, encoded
from bus.dead_letters import DeadLetter
from bus.pipeline import Pipeline, Route, Routing
from bus.port import Capabilities
from bus.settings import BusSettings
from contracts.envelope import CloudEvent

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Published:
    """One published event, shared by every group's queue."""

    body: bytes
    event: CloudEvent | None = None
    """Decoded by the first group that took it, for the others."""


@dataclass(eq=False)
class _Queued:
    published: _Published
    attempt: int


@dataclass
class _Group:
    queue: asyncio.Queue[_Queued]
    consumers: int = 0


@dataclass
class _Hub:
    """Topics of one `memory://NAME`: topic -> group -> queue of encoded events."""

    topics: dict[str, dict[str, _Group]] = field(default_factory=dict)
    dead_letters: dict[str, deque[DeadLetter]] = field(default_factory=dict)


_HUBS: dict[str, _Hub] = {}
DEAD_LETTERS_KEPT = 10_000


def dead_letters(url: str, group: str) -> list[DeadLetter]:
    """The dead letters of `group` on the memory bus at `url`, oldest first."""
    return list(_hub(url).dead_letters.get(group, ()))


def remove_dead_letters(url: str, group: str, ids: set[str]) -> int:
    """Drop the dead letters of `group` whose ids are in `ids`; return how many went."""
    kept = _hub(url).dead_letters.get(group)
    if not kept:
        return 0
    keep = [letter for letter in kept if str(letter.id) not in ids]
    removed = len(kept) - len(keep)
    kept.clear()
    kept.extend(keep)
    return removed


def queued(url: str, topic: str, group: str) -> int:
    """Events waiting in `group`'s queue of `topic` (0 when the group has no consumer)."""
    found = _hub(url).topics.get(topic, {}).get(group)
    return found.queue.qsize() if found is not None else 0


def _hub(url: str) -> _Hub:
    return _HUBS.setdefault(urlsplit(url).netloc or "default", _Hub())


class _Transport:
    redelivers_on_a_timer = False

    def __init__(self, bus: MemoryBus, route: Route) -> None:
        self._bus = bus
        self._route = route
        self.group: _Group | None = None

    def body(self, message: _Queued) -> bytes:
        return message.published.body

    def decoded(self, message: _Queued, body: bytes) -> CloudEvent:
        published = message.published
        if published.event is None:
            published.event = decode(body, self._bus._max_bytes)
        return published.event

    async def attempt(self, message: _Queued) -> int:
        return message.attempt

    def scope(self, message: _Queued) -> None:
        return None

    async def ack(self, messages: Sequence[_Queued]) -> None:
        return

    async def retry(self, message: _Queued, delay_s: float) -> None:
        group = self.group
        assert group is not None

        async def requeue() -> None:
            await asyncio.sleep(delay_s)  # a timer: the consumer handles other events meanwhile
            await group.queue.put(_Queued(message.published, message.attempt + 1))

        task = asyncio.create_task(requeue())
        self._bus._retries.add(task)
        task.add_done_callback(self._bus._retries.discard)

    async def keep_alive(self, messages: Sequence[_Queued]) -> None:
        return

    async def dead_letter(self, record: bytes) -> None:
        kept = self._bus._hub.dead_letters.setdefault(
            self._route.group, deque(maxlen=DEAD_LETTERS_KEPT)
        )
        kept.append(DeadLetter.model_validate_json(record))

    async def release(self, messages: Sequence[_Queued]) -> None:
        # Back to the group, for a replica that goes on (the group goes with its last one).
        group = self.group
        if group is not None and group.consumers > 1:
            for message in messages:
                group.queue.put_nowait(message)


class MemoryBus(Routing):
    name: ClassVar[str] = BACKEND.name
    capabilities: ClassVar[Capabilities] = BACKEND.capabilities

    def __init__(self, settings: BusSettings) -> None:
        super().__init__()
        self._settings = settings
        self._max_bytes = settings.max_event_bytes
        self._hub = _hub(settings.resolved_url)
        self._retries: set[asyncio.Task[None]] = set()
        self._routes: list[tuple[Route, _Transport, Pipeline[_Queued]]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._joined: list[_Group] = []
        self._closing = False

    async def _publish_event(self, topic: str, event: CloudEvent, stored: bytes | None) -> None:
        with tracing.publishing(topic, event, self.name) as stamped:
            body = encoded(event, stamped, stored, self._max_bytes)
            # The bytes `event` was decoded from, as they are: the consumers get it itself.
            published = _Published(body, event if body is stored else None)
            for group in list(self._hub.topics.get(names.check_topic(topic), {}).values()):
                await group.queue.put(_Queued(published, 1))
        log.debug("published %s %s to %s", event.type, event.id, topic)

    def _routed(self, route: Route) -> None:
        # Every group here lives only while a consumer runs: `ephemeral` changes only what
        # happens to an event past its attempts (dropped, not dead-lettered).
        transport = _Transport(self, route)
        pipeline = Pipeline(
            route, transport, self._settings, self.capabilities, self.name, transport.decoded
        )
        self._routes.append((route, transport, pipeline))

    async def start(self) -> None:
        for route, transport, pipeline in self._routes:
            groups = self._hub.topics.setdefault(route.topic, {})
            group = groups.get(route.group)
            if group is None:
                group = groups[route.group] = _Group(
                    asyncio.Queue(self._settings.memory_queue_size)
                )
            group.consumers += 1
            transport.group = group
            self._joined.append(group)
            self._workers.append(asyncio.create_task(self._consume(group, pipeline)))

    async def _consume(self, group: _Group, pipeline: Pipeline[_Queued]) -> None:
        while not self._closing:
            # Queue.get is cancel-safe: close() cancels the consumers waiting here.
            taken = [await group.queue.get()]
            # Up to the prefetch, but no more than this consumer's share of what waits: a
            # burst is split between the group's consumers, as a broker's round robin splits
            # it. (Busy peers count too: a share comes out smaller than it might, never
            # larger, and no consumer depends on when its peers last asked.)
            waiting = 1 + group.queue.qsize()
            take = min(self._settings.prefetch, -(-waiting // max(1, group.consumers)))
            while len(taken) < take and not group.queue.empty():
                taken.append(group.queue.get_nowait())
            await pipeline.deliver(taken)
            # Queue.get does not yield while events wait; without this one consumer of a
            # group would take them all and its peers would never compete.
            await asyncio.sleep(0)

    async def ping(self) -> bool:
        return True  # in-process: there is nothing to be unreachable

    async def close(self) -> None:
        """Stop taking events, let the batches in hand finish, then leave the groups."""
        self._closing = True
        for retry in list(self._retries):  # in-process only: a pending retry dies with us
            retry.cancel()
        for _, _, pipeline in self._routes:
            await pipeline.close()
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        for (route, _, _), group in zip(self._routes, self._joined, strict=False):
            group.consumers -= 1
            if group.consumers == 0:
                # No consumer left: the group goes, and with it what it had not taken.
                self._hub.topics[route.topic].pop(route.group, None)
        self._workers.clear()
        self._joined.clear()
