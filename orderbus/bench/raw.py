"""The baselines: each broker's own Python client doing what the bus does, nothing more.

Same acknowledgement settings as the bus: Redis `XADD`/`PUBLISH` answered by the server,
RabbitMQ publisher confirms and persistent messages, Kafka `acks=all`, NATS JetStream
publish awaiting its PubAck. Consumers acknowledge after handling, at least once, in each
client's idiomatic loop (a batch fetched, each message handled, then acknowledged: one
`XACK` / one Kafka commit per batch; RabbitMQ and NATS acks are one-way frames, sent per
message). Each consumer parses the JSON body, as any real consumer must.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from bus import BusSettings, names
from bus.backends._redis import DATA_FIELD as REDIS_DATA_FIELD
from bus.backends.kafka import bootstrap_servers
from bus.backends.nats.bus import FETCH_WINDOW_S

OnBody = Callable[[bytes], None]
PREFETCH: int = BusSettings.model_fields["prefetch"].default
"""Messages fetched per round trip: the bus's default `BUS_PREFETCH`."""


class RawClient(ABC):
    def __init__(self, url: str) -> None:
        self.url = url

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def prepare(self, topic: str, group: str) -> None:
        """Create `topic` and `group` so what is published from now on waits for the group."""

    @abstractmethod
    async def publish(self, topic: str, body: bytes, key: bytes) -> None:
        """One message, returning once the broker accepted it."""

    @abstractmethod
    async def publish_many(self, topic: str, items: list[tuple[bytes, bytes]]) -> None:
        """Many messages in flight at once (pipelined / in one confirm window)."""

    @abstractmethod
    async def consume(
        self, topic: str, group: str, on_body: OnBody, ready: asyncio.Event, stop: asyncio.Event
    ) -> None:
        """Consume `topic` as `group` until `stop` is set; set `ready` once subscribed. (Not
        cancelled: redis-py can hang when a blocking read is cancelled.)"""

    @abstractmethod
    async def remove(self, topics: Iterable[str], groups: Iterable[str]) -> None:
        """Delete what the benchmark created, bus side included."""


class RedisStreamsRaw(RawClient):
    async def open(self) -> None:
        import redis.asyncio as redis

        self.client: Any = redis.from_url(self.url)

    async def close(self) -> None:
        await self.client.aclose()

    async def prepare(self, topic: str, group: str) -> None:
        await self.client.xgroup_create(topic, group, id="0", mkstream=True)

    async def publish(self, topic: str, body: bytes, key: bytes) -> None:
        await self.client.xadd(topic, {REDIS_DATA_FIELD: body})

    async def publish_many(self, topic: str, items: list[tuple[bytes, bytes]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for body, _ in items:
            pipe.xadd(topic, {REDIS_DATA_FIELD: body})
        await pipe.execute()

    async def consume(
        self, topic: str, group: str, on_body: OnBody, ready: asyncio.Event, stop: asyncio.Event
    ) -> None:
        with contextlib.suppress(Exception):  # BUSYGROUP: prepared already
            await self.client.xgroup_create(topic, group, id="$", mkstream=True)
        ready.set()
        while not stop.is_set():
            answer = await self.client.xreadgroup(
                group, "raw", {topic: ">"}, count=PREFETCH, block=100
            )
            for _, entries in answer:
                for _, fields in entries:
                    on_body(fields[REDIS_DATA_FIELD])
                await self.client.xack(topic, group, *(entry_id for entry_id, _ in entries))

    async def remove(self, topics: Iterable[str], groups: Iterable[str]) -> None:
        keys = [*topics, *(names.dead_letters(g) for g in groups)]
        if keys:
            await self.client.delete(*keys)


class RedisPubSubRaw(RedisStreamsRaw):
    async def prepare(self, topic: str, group: str) -> None:
        pass  # a channel keeps nothing: there is nothing to create

    async def publish(self, topic: str, body: bytes, key: bytes) -> None:
        await self.client.publish(topic, body)

    async def publish_many(self, topic: str, items: list[tuple[bytes, bytes]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for body, _ in items:
            pipe.publish(topic, body)
        await pipe.execute()

    async def consume(
        self, topic: str, group: str, on_body: OnBody, ready: asyncio.Event, stop: asyncio.Event
    ) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(topic)
        ready.set()
        try:
            while not stop.is_set():
                message = await pubsub.get_message(timeout=0.1)
                if message is not None:
                    on_body(message["data"])
        finally:
            await pubsub.aclose()


class RabbitMQRaw(RawClient):
    async def open(self) -> None:
        import aio_pika

        self.connection: Any = await aio_pika.connect(self.url)
        self.channel: Any = await self.connection.channel(publisher_confirms=True)
        self.exchanges: dict[str, Any] = {}

    async def close(self) -> None:
        await self.connection.close()

    async def _exchange(self, topic: str) -> Any:
        import aio_pika

        if topic not in self.exchanges:
            self.exchanges[topic] = await self.channel.declare_exchange(
                topic, aio_pika.ExchangeType.FANOUT, durable=True
            )
        return self.exchanges[topic]

    async def prepare(self, topic: str, group: str) -> None:
        queue = await self.channel.declare_queue(
            names.group_queue(topic, group), durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(await self._exchange(topic))

    def _message(self, body: bytes) -> Any:
        import aio_pika

        return aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/cloudevents+json",
        )

    async def publish(self, topic: str, body: bytes, key: bytes) -> None:
        exchange = await self._exchange(topic)
        await exchange.publish(self._message(body), routing_key="")

    async def publish_many(self, topic: str, items: list[tuple[bytes, bytes]]) -> None:
        exchange = await self._exchange(topic)
        await asyncio.gather(
            *(exchange.publish(self._message(b), routing_key="") for b, _ in items)
        )

    async def consume(
        self, topic: str, group: str, on_body: OnBody, ready: asyncio.Event, stop: asyncio.Event
    ) -> None:
        await self.prepare(topic, group)
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.get_queue(names.group_queue(topic, group))

        async def on_message(message: Any) -> None:
            on_body(message.body)
            await message.ack()

        tag = await queue.consume(on_message)
        ready.set()
        try:
            await stop.wait()
            await queue.cancel(tag)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def remove(self, topics: Iterable[str], groups: Iterable[str]) -> None:
        channel = await self.connection.channel()
        for topic in topics:
            for group in groups:
                await channel.queue_delete(names.group_queue(topic, group))
            await channel.exchange_delete(topic)
        await channel.close()


class KafkaRaw(RawClient):
    def __init__(self, url: str, partitions: int = 6) -> None:
        super().__init__(url)
        self.partitions = partitions

    async def open(self) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.admin import AIOKafkaAdminClient

        self.servers = bootstrap_servers(self.url)
        self.producer: Any = AIOKafkaProducer(bootstrap_servers=self.servers, acks="all")
        await self.producer.start()
        self.admin: Any = AIOKafkaAdminClient(bootstrap_servers=self.servers)
        await self.admin.start()
        self.created: set[str] = set()

    async def close(self) -> None:
        await self.producer.stop()
        await self.admin.close()

    async def prepare(self, topic: str, group: str) -> None:
        from aiokafka.admin import NewTopic

        if topic not in self.created:
            with contextlib.suppress(Exception):  # exists already
                await self.admin.create_topics([NewTopic(topic, self.partitions, 1)])
            self.created.add(topic)

    async def publish(self, topic: str, body: bytes, key: bytes) -> None:
        await self.producer.send_and_wait(topic, body, key=key)

    async def publish_many(self, topic: str, items: list[tuple[bytes, bytes]]) -> None:
        sent = [await self.producer.send(topic, body, key=key) for body, key in items]
        await asyncio.gather(*sent)

    async def consume(
        self, topic: str, group: str, on_body: OnBody, ready: asyncio.Event, stop: asyncio.Event
    ) -> None:
        from aiokafka import AIOKafkaConsumer

        await self.prepare(topic, group)
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=self.servers,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            while not consumer.assignment():  # noqa: ASYNC110 - aiokafka has no event for it
                await asyncio.sleep(0.05)
            ready.set()
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=100, max_records=PREFETCH)
                for records in batches.values():
                    for record in records:
                        on_body(record.value)
                if batches:
                    await consumer.commit()
        finally:
            await consumer.stop()

    async def remove(self, topics: Iterable[str], groups: Iterable[str]) -> None:
        with contextlib.suppress(Exception):  # not every Kafka-protocol broker deletes
            await self.admin.delete_topics(list(topics))


class NatsRaw(RawClient):
    async def open(self) -> None:
        import nats

        self.client: Any = await nats.connect(self.url)
        self.js: Any = self.client.jetstream()
        self.created: set[str] = set()

    async def close(self) -> None:
        await self.client.drain()

    async def prepare(self, topic: str, group: str) -> None:
        if topic not in self.created:
            await self.js.add_stream(name=topic, subjects=[topic])
            self.created.add(topic)

    async def publish(self, topic: str, body: bytes, key: bytes) -> None:
        await self.js.publish(topic, body, stream=topic)

    async def publish_many(self, topic: str, items: list[tuple[bytes, bytes]]) -> None:
        await asyncio.gather(*(self.js.publish(topic, body, stream=topic) for body, _ in items))

    async def consume(
        self, topic: str, group: str, on_body: OnBody, ready: asyncio.Event, stop: asyncio.Event
    ) -> None:
        import nats.errors
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        await self.prepare(topic, group)
        subscription = await self.js.pull_subscribe(
            topic,
            durable=group,
            stream=topic,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL),
        )
        ready.set()
        try:
            while not stop.is_set():
                try:
                    messages = await subscription.fetch(PREFETCH, timeout=FETCH_WINDOW_S)
                except nats.errors.TimeoutError:
                    continue
                for message in messages:
                    on_body(message.data)
                    await message.ack()
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def remove(self, topics: Iterable[str], groups: Iterable[str]) -> None:
        for topic in topics:
            with contextlib.suppress(Exception):
                await self.js.delete_stream(topic)


RAW_CLIENTS: dict[str, Callable[[str], RawClient]] = {
    "redis-streams": RedisStreamsRaw,
    "redis-pubsub": RedisPubSubRaw,
    "rabbitmq": RabbitMQRaw,
    "kafka": KafkaRaw,
    "nats": NatsRaw,
}
"""The baseline client per backend (memory has none: there is no broker to compare with)."""
