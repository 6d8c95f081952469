"""How far behind a group is, asked of the broker itself: for metrics, at scrape time.

FastStream has no such query, so each backend's native client does it (one connection per
probe, kept open between scrapes and apart from the bus's own, so a slow broker answer never
holds up a handler). Every figure is for one topic and one group:

- lag: published, not yet delivered to the group (Kafka consumer lag, Redis Streams group
  lag, RabbitMQ ready messages in `<topic>.<group>`, NATS `num_pending`, memory queue size);
- pending: delivered, not yet acknowledged (Redis pending entries, NATS `num_ack_pending`);
- stream length: Redis Streams `XLEN` of the topic;
- dead letters: entries in `dlq.<group>` (on Kafka: past the `orderbus dlq` cursor).

The table per backend is in docs/metrics.md. A figure the backend cannot give is None
(its gauge is left out).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Protocol

from bus import names
from bus.backends.kafka import bootstrap_servers
from bus.backends.nats import dead_letter_stream
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
    url = settings.resolved_url
    probes: dict[str, type[_Probe]] = {
        "memory": MemoryProbe,
        "redis-pubsub": RedisPubSubProbe,
        "redis-streams": RedisStreamsProbe,
        "rabbitmq": RabbitProbe,
        "kafka": KafkaProbe,
        "nats": NatsProbe,
    }
    return probes[settings.backend](url)


class _Probe:
    def __init__(self, url: str) -> None:
        self.url = url

    async def backlog(self, topic: str, group: str) -> Backlog:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class MemoryProbe(_Probe):
    async def backlog(self, topic: str, group: str) -> Backlog:
        from bus.backends import memory

        return Backlog(
            lag=memory.queued(self.url, topic, group),
            dead_letters=len(memory.dead_letters(self.url, group)),
        )


class _RedisProbe(_Probe):
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        super().__init__(url)
        self.client = redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    async def close(self) -> None:
        await self.client.aclose()

    async def _dead_letters(self, group: str) -> int:
        return int(await self.client.xlen(names.dead_letters(group)))


class RedisPubSubProbe(_RedisProbe):
    async def backlog(self, topic: str, group: str) -> Backlog:
        return Backlog(dead_letters=await self._dead_letters(group))


class RedisStreamsProbe(_RedisProbe):
    async def backlog(self, topic: str, group: str) -> Backlog:
        from redis.exceptions import ResponseError

        try:
            groups: list[dict[Any, Any]] = await self.client.xinfo_groups(topic)
        except ResponseError:  # no such key: nothing published, no group yet
            groups = []
        found = next((g for g in groups if _text(g["name"]) == group), None)
        lag = found.get("lag") if found is not None else None
        return Backlog(
            # Redis reports no lag (nil) after entries were deleted from the stream.
            lag=int(lag) if lag is not None else None,
            pending=int(found["pending"]) if found is not None else 0,
            stream_length=int(await self.client.xlen(topic)),
            dead_letters=await self._dead_letters(group),
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RabbitProbe(_Probe):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.connection: Any = None

    async def _ready(self, queue: str) -> int | None:
        import aio_pika
        import aiormq

        if self.connection is None or self.connection.is_closed:
            self.connection = await aio_pika.connect(self.url, timeout=5)
        # A passive declare answers with the queue's ready-message count; for a queue that
        # does not exist the broker closes the channel, so each question gets its own.
        async with self.connection.channel() as channel:
            try:
                declared = await channel.declare_queue(queue, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return None
            count = declared.declaration_result.message_count
            return int(count) if count is not None else None

    async def backlog(self, topic: str, group: str) -> Backlog:
        return Backlog(
            lag=await self._ready(names.group_queue(topic, group)),
            dead_letters=await self._ready(names.dead_letters(group)) or 0,
        )

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()


class KafkaProbe(_Probe):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.admin: Any = None
        self.consumer: Any = None

    async def _clients(self) -> tuple[Any, Any]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        if self.admin is None:
            servers = bootstrap_servers(self.url)
            admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=5_000)
            consumer = AIOKafkaConsumer(bootstrap_servers=servers, request_timeout_ms=5_000)
            await admin.start()
            try:
                await consumer.start()
            except Exception:
                await admin.close()
                raise
            self.admin, self.consumer = admin, consumer
        return self.admin, self.consumer

    async def _lag(self, topic: str, group: str) -> int | None:
        """Records of `topic` past `group`'s committed offsets (from the start where it has
        none, as the bus's groups begin at the earliest offset)."""
        from aiokafka import TopicPartition

        admin, consumer = await self._clients()
        # Asked afresh each time: the consumer's cached metadata never learns of a topic
        # created after it started (a first dead letter, say). All topics, not this one by
        # name: a metadata request naming a missing topic may have the broker create it.
        described = [t for t in await admin.describe_topics() if t["topic"] == topic]
        if not described or described[0]["error_code"] != 0:
            return None
        partitions = [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]
        end = await consumer.end_offsets(partitions)
        start = await consumer.beginning_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        lag = 0
        for partition in partitions:
            done = committed.get(partition)
            position = done.offset if done is not None and done.offset >= 0 else start[partition]
            lag += max(0, end[partition] - position)
        return lag

    async def backlog(self, topic: str, group: str) -> Backlog:
        dead = await self._lag(names.dead_letters(group), f"orderbus-dlq.{group}")
        return Backlog(lag=await self._lag(topic, group), dead_letters=dead or 0)

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.admin is not None:
            await self.admin.close()


class NatsProbe(_Probe):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.client: Any = None

    async def backlog(self, topic: str, group: str) -> Backlog:
        import nats
        from nats.js.errors import NotFoundError

        if self.client is None or self.client.is_closed:
            self.client = await nats.connect(self.url, connect_timeout=5, max_reconnect_attempts=1)
        js = self.client.jetstream(timeout=5)
        lag = pending = None
        with contextlib.suppress(NotFoundError):
            info = await js.consumer_info(topic, group)
            lag, pending = info.num_pending, info.num_ack_pending
        dead = 0
        with contextlib.suppress(NotFoundError):
            dead = (await js.stream_info(dead_letter_stream(group))).state.messages
        return Backlog(lag=lag, pending=pending, dead_letters=dead)

    async def close(self) -> None:
        if self.client is not None and not self.client.is_closed:
            await self.client.close()
