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

Each group queue is bounded (`BUS_MEMORY_QUEUE_SIZE`): a publisher waits when it is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import urlsplit

from bus import names, tracing
from bus.codec import PoisonMessage, decode, encode
from bus.logfields import event_fields
from bus.port import Capabilities, Delivery, Handler
from bus.retry import DeadLetter
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


@dataclass(frozen=True)
class _Subscription:
    topic: str
    group: str
    consumer: str
    handler: Handler
    ephemeral: bool


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
        self._hub = _hub(settings.resolved_url)
        self._retries: set[asyncio.Task[None]] = set()
        self._subscriptions: list[_Subscription] = []
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        self._joined: list[_Group] = []
        self._closing = False

    async def publish(self, topic: str, event: CloudEvent) -> None:
        with tracing.publishing(topic, event, self.name) as stamped:
            body = encode(stamped, self._settings.max_event_bytes)
            for group in list(self._hub.topics.get(names.check_topic(topic), {}).values()):
                await group.queue.put((body, 1))
        log.debug("published %s %s to %s", event.type, event.id, topic)

    def subscribe(
        self, topic: str, handler: Handler, *, group: str, consumer: str, ephemeral: bool = False
    ) -> None:
        # Every group here lives only while a consumer runs: `ephemeral` changes only what
        # happens to an event past its attempts (dropped, not dead-lettered).
        self._subscriptions.append(
            _Subscription(
                names.check_topic(topic),
                names.check_group(group),
                names.check_consumer(consumer),
                handler,
                ephemeral,
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
                delivery = Delivery(sub.topic, sub.group, sub.consumer, attempt)
                with tracing.handling(
                    sub.topic, sub.group, sub.consumer, event, attempt, self.name
                ):
                    await sub.handler(event, delivery)
            except PoisonMessage as poison:
                self._dead_letter(sub, body, attempt, poison, None)
            except Exception as failure:  # noqa: BLE001 - every failure gets the retry policy
                policy = self._settings.retry
                if policy.gives_up(attempt):
                    self._dead_letter(sub, body, attempt, failure, event)
                else:
                    delay = policy.delay_s(attempt)
                    log.warning(
                        "handler failed on %s/%s (attempt %d): %s; retrying in %.2fs",
                        sub.topic,
                        sub.group,
                        attempt,
                        failure,
                        delay,
                        extra=event_fields(
                            "retry",
                            event,
                            topic=sub.topic,
                            service=sub.group,
                            instance=sub.consumer,
                            attempt=attempt,
                        ),
                    )
                    retry = asyncio.create_task(self._requeue(group, body, attempt + 1, delay))
                    self._retries.add(retry)
                    retry.add_done_callback(self._retries.discard)
            finally:
                self._busy.discard(me)
            # Queue.get does not yield while events wait; without this one consumer of a
            # group would take them all and its peers would never compete.
            await asyncio.sleep(0)

    @staticmethod
    async def _requeue(group: _Group, body: bytes, attempt: int, delay_s: float) -> None:
        await asyncio.sleep(delay_s)  # a timer: the consumer handles other events meanwhile
        await group.queue.put((body, attempt))

    def _dead_letter(
        self,
        sub: _Subscription,
        body: bytes,
        attempts: int,
        error: BaseException,
        event: CloudEvent | None,
    ) -> None:
        event_id = str(event.id) if event is not None else None
        if sub.ephemeral:
            log.error(
                "dropped %s from ephemeral %s/%s after %d attempt(s): %s",
                event_id or "a message",
                sub.topic,
                sub.group,
                attempts,
                error,
                extra=event_fields(
                    "drop",
                    event,
                    topic=sub.topic,
                    service=sub.group,
                    instance=sub.consumer,
                    attempt=attempts,
                ),
            )
            return
        record = DeadLetter.of(
            body,
            topic=sub.topic,
            group=sub.group,
            consumer=sub.consumer,
            attempts=attempts,
            error=error,
            event_id=event_id,
        )
        kept = self._hub.dead_letters.setdefault(sub.group, deque(maxlen=DEAD_LETTERS_KEPT))
        kept.append(record)
        log.error(
            "dead-lettered a message from %s/%s after %d attempt(s): %s",
            sub.topic,
            sub.group,
            attempts,
            record.error,
            extra=event_fields(
                "dead_letter",
                event,
                topic=sub.topic,
                service=sub.group,
                instance=sub.consumer,
                attempt=attempts,
            ),
        )

    async def ping(self) -> bool:
        return True  # in-process: there is nothing to be unreachable

    async def close(self) -> None:
        """Stop taking events, let handlers in flight finish, then leave the groups."""
        self._closing = True
        for retry in list(self._retries):  # in-process only: a pending retry dies with us
            retry.cancel()
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
