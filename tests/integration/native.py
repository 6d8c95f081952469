"""The brokers' own clients: to look inside, to inject what the bus would never send, and to
clean up after a test."""

from __future__ import annotations

from bus import BusSettings
from bus.backends import memory
from bus.backends.kafka import bootstrap_servers
from bus.dead_letter_store import REDIS_DATA_FIELD, open_store
from bus.retry import DeadLetter
from bus.topology import remove_topology

__all__ = ["inject_raw", "read_dead_letters", "remove_topology"]


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


async def read_dead_letters(backend: str, url: str, group: str) -> list[DeadLetter]:
    """Every entry of `dlq.<group>`, oldest first, read without consuming it."""
    if backend == "memory":
        return memory.dead_letters(url, group)
    store = open_store(BusSettings(backend=backend, url=url))
    return [stored.letter for stored in await store.list(group)]
