"""Messages the client library could not even read are dead-lettered, not skipped or left
pending for ever: a Kafka record with a header that is not UTF-8, a Redis Streams entry whose
field name and value are not. The events behind them are handled, and nothing stays
unacknowledged."""

from __future__ import annotations

import pytest

from bus.backends.kafka import bootstrap_servers
from bus.dead_letters import DeadLetter
from tests.integration.conftest import BusFactory, Names, Recorder, make_event
from tests.integration.native import read_dead_letters, unacknowledged
from tests.polling import eventually

BAD = b"\xff\xfe\xfa not UTF-8"


async def inject_unreadable(backend: str, url: str, topic: str, body: bytes) -> None:
    if backend == "kafka":
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(url))
        await producer.start()
        try:
            await producer.send_and_wait(topic, body, headers=[("h\xe9", BAD)])
        finally:
            await producer.stop()
    else:
        import redis.asyncio as redis

        client = redis.from_url(url)
        try:
            await client.xadd(topic, {BAD: body, b"__data__\xff": BAD})
        finally:
            await client.aclose()


@pytest.mark.parametrize("backend", ["redis-streams", "kafka"])
async def test_an_unreadable_message_is_dead_lettered_with_its_bytes(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    topic, group = names.topic(), names.group()
    received = Recorder()
    await make_bus((topic, received, group, "c1"))
    publisher = await make_bus()
    await publisher.publish(topic, make_event(topic, 0))  # the topic and group exist now
    await received.wait_for_count(1)

    await inject_unreadable(backend, backend_url, topic, BAD)
    events = [make_event(topic, i) for i in range(1, 6)]
    for event in events:
        await publisher.publish(topic, event)
    await received.wait_for_count(6)

    async def dead() -> list[DeadLetter] | None:
        return await read_dead_letters(backend, backend_url, group) or None

    [letter] = await eventually(dead, 30)
    assert letter.attempts == 1
    # The bytes as they came (invalid UTF-8 replaced): the record's body, or the entry's fields.
    assert BAD.decode("utf-8", errors="replace") in letter.envelope
    assert letter.error

    async def settled() -> bool | None:
        return True if await unacknowledged(backend, backend_url, topic, group, 7) == 0 else None

    await eventually(settled, 30)
