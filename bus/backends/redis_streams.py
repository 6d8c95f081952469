"""Redis Streams: a persistent log with consumer groups, the notes' "queue" done right.

URL: `redis://[:password@]host:port/db` (default `redis://127.0.0.1:6379/0`). The topic is the
stream key; each group is a Redis consumer group (created at `$`, so a new group starts with
what is published after it); the consumer is the instance id.

| feature | |
|---|---|
| fan-out across groups | yes: one consumer group per service |
| competing consumers | yes: consumers of a group share its entries |
| offline catch-up | yes: entries wait in the stream for the group |
| redelivery | yes: an entry left pending (handler raised, consumer died) is reclaimed |
|            | with XAUTOCLAIM after `BUS_REDELIVERY_AFTER_MS` idle |
| ordering | per stream, with one consumer |

The stream is not trimmed: nothing can drop an entry a group has not read (trim it yourself,
below the oldest entry every group has acknowledged, if it grows too long). Consumers that
died are removed from their group once idle for `BUS_DEAD_CONSUMER_AFTER_S` with nothing
pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, ClassVar

from faststream import AckPolicy, StreamMessage
from faststream.exceptions import NackMessage
from faststream.redis import RedisBroker, StreamSub

from bus import names
from bus.backends._faststream import Adapt, FastStreamBus
from bus.backends._redis_format import PlainMessageFormat
from bus.backends._redis_pipeline import PipelinedPublisher
from bus.port import Capabilities

log = logging.getLogger(__name__)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisStreamsBus(FastStreamBus[RedisBroker]):
    """Adds what FastStream's stream subscriber lacks: removing the consumers that died."""

    name: ClassVar[str] = "redis-streams"
    capabilities: ClassVar[Capabilities] = Capabilities(
        fan_out=True,
        competing_consumers=True,
        offline_catch_up=True,
        redelivery=True,
        per_key_ordering=False,
        ordering="per stream, with one consumer",
    )

    def _create_broker(self, url: str, **common: Any) -> RedisBroker:
        self._groups: list[tuple[str, str, str]] = []
        self._sweeper: asyncio.Task[None] | None = None
        # Concurrent publishes share a round trip (see _redis_pipeline for why and numbers).
        self._pipelined = PipelinedPublisher(
            lambda: self._broker.config.connection.client.pipeline(transaction=False)
        )
        return RedisBroker(url, message_format=PlainMessageFormat, **common)

    async def start(self) -> None:
        await super().start()
        if self._groups:
            self._sweeper = asyncio.create_task(self._sweep_dead_consumers())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await super().close()

    async def _sweep_dead_consumers(self) -> None:
        after_ms = self._settings.dead_consumer_after_s * 1_000
        client = self._broker.config.connection.client
        while True:
            await asyncio.sleep(max(0.5, min(60.0, after_ms / 2_000)))
            for topic, group, me in self._groups:
                try:
                    consumers = await client.xinfo_consumers(topic, group)
                except Exception:
                    log.debug("cannot list consumers of %s/%s", topic, group, exc_info=True)
                    continue
                for consumer in consumers:
                    name = _text(consumer["name"])
                    if name != me and consumer["pending"] == 0 and consumer["idle"] > after_ms:
                        await client.xgroup_delconsumer(topic, group, name)
                        log.info("removed dead consumer %s from %s/%s", name, topic, group)

    def _register(self, topic: str, group: str, consumer: str, adapt: Adapt) -> None:
        self._groups.append((topic, group, consumer))
        idle_ms = self._settings.redelivery_after_ms
        # Without max_records XREADGROUP has no COUNT and one consumer takes the whole
        # backlog, leaving its peers idle; the bound is also our in-flight limit.
        reader = StreamSub(
            topic, group=group, consumer=consumer, max_records=self._settings.prefetch
        )
        # FastStream's `min_idle_time` turns a subscriber into an XAUTOCLAIM loop that never
        # reads new entries, so reclaiming takes a second subscriber on the same group.
        reclaimer = StreamSub(
            topic,
            group=group,
            consumer=consumer,
            min_idle_time=idle_ms,
            polling_interval=min(1_000, max(100, idle_ms // 5)),
        )
        # The default, REJECT_ON_ERROR, does the same on Redis (leaves the entry pending);
        # say so explicitly since pending-then-reclaimed is the whole redelivery story.
        self._broker.subscriber(stream=reader, ack_policy=AckPolicy.NACK_ON_ERROR)(
            adapt(self._first_attempt)
        )
        self._broker.subscriber(stream=reclaimer, ack_policy=AckPolicy.NACK_ON_ERROR)(
            adapt(self._pending_attempt(topic, group))
        )

    async def _first_attempt(self, message: StreamMessage[Any]) -> int:
        return 1  # XREADGROUP with `>` only hands out entries never delivered before

    def _pending_attempt(self, topic: str, group: str) -> Any:
        async def attempt(message: StreamMessage[Any]) -> int | None:
            # XAUTOCLAIM counts the claim as a delivery; the count lives in the PEL.
            (entry_id,) = message.raw_message["message_ids"]
            pending = await self._broker.config.connection.client.xpending_range(
                topic, group, min=entry_id, max=entry_id, count=1
            )
            return int(pending[0]["times_delivered"]) if pending else None

        return attempt

    async def _publish(self, topic: str, body: bytes, key: str) -> None:
        await self._pipelined.publish(
            lambda pipe: self._broker.publish(body, stream=topic, pipeline=pipe)
        )

    async def _publish_dead_letter(self, group: str, body: bytes) -> None:
        await self._broker.publish(body, stream=names.dead_letters(group))

    async def _retry_later(self, message: StreamMessage[Any], delay_s: float) -> None:
        # Leave the entry pending: the reclaimer takes it once it has been idle for
        # BUS_REDELIVERY_AFTER_MS (a fixed delay: XAUTOCLAIM has one idle time per call).
        raise NackMessage
