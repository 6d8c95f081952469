"""Deleting what was declared on a broker: topics (streams, exchanges, Kafka topics), the
groups' queues and their dead-letter destinations. For tests and `orderbus demo`, which use
names of their own and must not leave them behind. The bus itself deletes only what an
ephemeral subscription declared (see `Bus.subscribe`), never a durable group's state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from bus import names
from bus.backends.kafka import bootstrap_servers
from bus.backends.nats import dead_letter_stream


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
                await channel.exchange_delete(dlq)  # the exchange routing to it
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
