"""The brokers' own clients, for looking inside and cleaning up after a test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from bus import names
from bus.backends.kafka import bootstrap_servers


async def remove_topology(
    backend: str, url: str, topics: Iterable[str], groups: Iterable[str]
) -> None:
    """Delete what a test declared, so the shared brokers do not fill up run after run."""
    topics, groups = list(topics), list(groups)
    if not topics:
        return
    if backend.startswith("redis"):
        import redis.asyncio as redis

        redis_client = redis.from_url(url)
        await redis_client.delete(*topics)
        await redis_client.aclose()
    elif backend == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            for topic in topics:
                for group in [*groups, "probe"]:
                    await channel.queue_delete(names.group_queue(topic, group))
                await channel.exchange_delete(topic)
    elif backend == "nats":
        import nats
        from nats.js.errors import NotFoundError

        client = await nats.connect(url)
        js = client.jetstream()
        for topic in topics:
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(topic)
        await client.drain()
    elif backend == "kafka":
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(url))
        await admin.start()
        with contextlib.suppress(Exception):  # not every Kafka-protocol broker deletes
            await admin.delete_topics(topics)
        await admin.close()
