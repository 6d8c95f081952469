"""The brokers' own clients: to look inside, to inject what the bus would never send, and to
clean up after a test."""

from __future__ import annotations

from bus import BusSettings, names
from bus.backends._redis import DATA_FIELD as REDIS_DATA_FIELD
from bus.backends.kafka import bootstrap_servers
from bus.backends.memory import bus as memory
from bus.dead_letters import DeadLetter, open_store
from bus.topology import remove_topology

__all__ = [
    "inject_dead_letter",
    "inject_raw",
    "messages_in_queue",
    "read_dead_letters",
    "remove_topology",
    "unacknowledged",
]


async def inject_raw(backend: str, url: str, topic: str, body: bytes) -> None:
    """Put bytes on `topic` with the broker's own client, bypassing every check of the bus."""
    if backend == "memory":
        for group in memory._hub(url).topics.get(topic, {}).values():
            await group.queue.put(memory._Queued(memory._Published(body), 1))
    elif backend == "redis-pubsub":
        import redis.asyncio as redis

        redis_client = redis.from_url(url)
        await redis_client.publish(topic, body)
        await redis_client.aclose()
    elif backend == "redis-streams":
        import redis.asyncio as redis

        redis_client = redis.from_url(url)
        await redis_client.xadd(topic, {REDIS_DATA_FIELD: body})
        await redis_client.aclose()
    elif backend == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(topic)
            await exchange.publish(aio_pika.Message(body), routing_key="")
    elif backend == "kafka":
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(url))
        await producer.start()
        await producer.send_and_wait(topic, body, key=b"poison")
        await producer.stop()
    elif backend == "nats":
        import nats

        nats_client = await nats.connect(url)
        await nats_client.jetstream().publish(topic, body, stream=topic)
        await nats_client.drain()


async def inject_dead_letter(backend: str, url: str, group: str, body: bytes) -> None:
    """Put bytes in `dlq.<group>` (declared already) with the broker's own client, as anything
    that can write to the broker could."""
    destination = names.dead_letters(group)
    if backend in ("redis-streams", "redis-pubsub", "kafka"):
        # A stream, or a topic, like any other: the dead letters of redis-pubsub too.
        await inject_raw("kafka" if backend == "kafka" else "redis-streams", url, destination, body)
    elif backend == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            await channel.default_exchange.publish(aio_pika.Message(body), destination)
    elif backend == "nats":
        import nats

        from bus.backends.nats import dead_letter_stream

        nats_client = await nats.connect(url)
        await nats_client.jetstream().publish(destination, body, stream=dead_letter_stream(group))
        await nats_client.drain()
    else:
        raise ValueError(f"no raw dead letters on {backend}")


async def read_dead_letters(backend: str, url: str, group: str) -> list[DeadLetter]:
    """Every entry of `dlq.<group>`, oldest first, read without consuming it."""
    if backend == "memory":
        return memory.dead_letters(url, group)
    store = open_store(BusSettings(backend=backend, url=url))
    return [stored.letter for stored in await store.list(group)]


async def messages_in_queue(url: str, name: str) -> int:
    """Messages in a RabbitMQ queue (a passive declare: it does not count as using it)."""
    import aio_pika

    connection = await aio_pika.connect(url)
    async with connection:
        queue = await (await connection.channel()).declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)


async def unacknowledged(backend: str, url: str, topic: str, group: str, published: int) -> int:
    """How many of the `published` events of a fresh `topic` the broker still holds for
    `group` as not acknowledged: waiting, in flight, or pending (redis-pubsub and memory keep
    none once delivered)."""
    if backend in ("memory", "redis-pubsub"):
        return 0
    if backend == "redis-streams":
        import redis.asyncio as redis

        redis_client = redis.from_url(url)
        try:
            pending = await redis_client.xpending(topic, group)
            [info] = [
                g for g in await redis_client.xinfo_groups(topic) if g["name"] == group.encode()
            ]
            return int(pending["pending"]) + int(info["lag"] or 0)
        finally:
            await redis_client.aclose()
    if backend == "rabbitmq":
        return await messages_in_queue(url, names.group_queue(topic, group))
    if backend == "kafka":
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(url), group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            await consumer.topics()  # fetches the cluster's metadata, this topic's included
            partitions = consumer.partitions_for_topic(topic) or set()
            committed = [await consumer.committed(TopicPartition(topic, p)) for p in partitions]
            # Offsets count from 0 in each partition of a fresh topic, so the committed ones add
            # up to what the group is done with. (Not the end offsets: Tansu answers those with
            # the last batch's first offset.)
            return published - sum(offset or 0 for offset in committed)
        finally:
            await consumer.stop()
    if backend == "nats":
        import nats

        nats_client = await nats.connect(url)
        try:
            info = await nats_client.jetstream().consumer_info(topic, group)
            return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        finally:
            await nats_client.drain()
    raise ValueError(f"no probe for {backend}")
