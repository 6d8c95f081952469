"""The brokers' own clients: to look inside, to inject what the bus would never send, and to
clean up after a test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from bus import names
from bus.backends import memory
from bus.backends.kafka import bootstrap_servers
from bus.backends.nats import dead_letter_stream
from bus.retry import DeadLetter

REDIS_DATA_FIELD = b"__data__"  # the field FastStream reads a stream entry's body from


async def remove_topology(
    backend: str, url: str, topics: Iterable[str], groups: Iterable[str]
) -> None:
    """Delete what a test declared, so the shared brokers do not fill up run after run."""
    topics, groups = list(topics), list(groups)
    dlqs = [names.dead_letters(g) for g in groups]
    if backend.startswith("redis"):
        import redis.asyncio as redis

        redis_client = redis.from_url(url)
        if topics or dlqs:
            await redis_client.delete(*topics, *dlqs)
        await redis_client.aclose()
    elif backend == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            for topic in topics:
                for group in groups:
                    await channel.queue_delete(names.group_queue(topic, group))
                await channel.exchange_delete(topic)
            for dlq in dlqs:
                await channel.queue_delete(dlq)
    elif backend == "nats":
        import nats
        from nats.js.errors import NotFoundError

        client = await nats.connect(url)
        js = client.jetstream()
        for stream in [*topics, *(dead_letter_stream(g) for g in groups)]:
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(stream)
        await client.drain()
    elif backend == "kafka":
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(url))
        await admin.start()
        with contextlib.suppress(Exception):  # not every Kafka-protocol broker deletes
            await admin.delete_topics([*topics, *dlqs])
        await admin.close()


async def inject_raw(backend: str, url: str, topic: str, body: bytes) -> None:
    """Put bytes on `topic` with the broker's own client, bypassing every check of the bus."""
    if backend == "memory":
        for group in memory._hub(url).topics.get(topic, {}).values():
            await group.queue.put((body, 1))
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


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


async def read_dead_letters(backend: str, url: str, group: str) -> list[DeadLetter]:
    """Every entry of `dlq.<group>`, oldest first, read without consuming where possible."""
    dlq = names.dead_letters(group)
    bodies: list[bytes] = []
    if backend == "memory":
        return memory.dead_letters(url, group)
    if backend.startswith("redis"):
        import redis.asyncio as redis

        redis_client = redis.from_url(url)
        entries = await redis_client.xrange(dlq) or []
        bodies = [_as_bytes(fields[REDIS_DATA_FIELD]) for _, fields in entries if fields]
        await redis_client.aclose()
    elif backend == "rabbitmq":
        import aio_pika
        import aiormq

        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(dlq, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return []  # nothing dead-lettered yet: the queue is declared on first use
            held = []
            while (message := await queue.get(fail=False)) is not None:
                bodies.append(message.body)
                held.append(message)
            for message in held:  # a look, not a take: put them back
                await message.nack(requeue=True)
    elif backend == "kafka":
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(url))
        await consumer.start()
        try:
            partitions = [TopicPartition(dlq, p) for p in consumer.partitions_for_topic(dlq) or ()]
            if partitions:
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                end = await consumer.end_offsets(partitions)

                async def behind() -> bool:
                    return any([await consumer.position(p) < end[p] for p in partitions])

                while await behind():
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        bodies.extend(r.value for r in records if r.value is not None)
        finally:
            await consumer.stop()
    elif backend == "nats":
        import nats
        from nats.js.errors import NotFoundError

        nats_client = await nats.connect(url)
        js = nats_client.jetstream()
        try:
            info = await js.stream_info(dead_letter_stream(group))
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                bodies.append((await js.get_msg(dead_letter_stream(group), seq)).data or b"")
        except NotFoundError:
            pass
        await nats_client.drain()
    return [DeadLetter.model_validate_json(body) for body in bodies]
