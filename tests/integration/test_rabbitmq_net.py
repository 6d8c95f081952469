"""RabbitMQ's own dead-letter net under the bus's: `x-delivery-limit` and a dead-letter
exchange on every group queue, for what the bus could not dead-letter itself."""

from __future__ import annotations

import aio_pika
import pytest

from bus import BusSettings, Delivery
from bus.backends.rabbitmq.bus import NET_DELIVERY_LIMIT
from bus.dead_letters import Stored, open_store
from bus.names import group_queue
from contracts import CloudEvent
from orderbus import dlq
from tests.integration.conftest import BusFactory, Names, Recorder, make_event
from tests.polling import eventually

pytestmark = pytest.mark.parametrize("backend", ["rabbitmq"])
MAX_ATTEMPTS = 2


async def test_a_message_nobody_settles_is_dead_lettered_by_rabbitmq(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    topic, group = names.topic(), names.group()

    async def unused(event: CloudEvent, delivery: Delivery) -> None:
        raise AssertionError("the bus's consumer is gone before anything is published")

    declaring = await make_bus((topic, unused, group, "c1"), max_attempts=MAX_ATTEMPTS)
    await declaring.close()  # its queue, with the net, stays

    event = make_event(topic, 1)
    connection = await aio_pika.connect(backend_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(topic)
        await exchange.publish(aio_pika.Message(event.to_json(), message_id="m-1"), "")
        queue = await channel.get_queue(group_queue(topic, group))
        # A consumer that takes the event and hands it back without an outcome, again and
        # again: what a bus whose own dead-lettering keeps failing would do.
        returned = 0
        while (message := await queue.get(fail=False)) is not None:
            await message.nack(requeue=True)
            returned += 1
            assert returned <= NET_DELIVERY_LIMIT + 1, "RabbitMQ never dead-lettered it"
    assert returned == NET_DELIVERY_LIMIT + 1

    settings = BusSettings(backend=backend, url=backend_url, max_attempts=MAX_ATTEMPTS)

    async def listed() -> list[Stored] | None:
        return (await open_store(settings).list(group)) or None

    [stored] = await eventually(listed)
    letter = stored.letter
    assert letter.event_id == str(event.id)
    assert letter.topic == topic
    assert "delivery_limit" in letter.error
    assert CloudEvent.from_json(letter.envelope).id == event.id

    # The net's dead letters are replayed like the bus's own.
    recorder = Recorder()
    await make_bus((topic, recorder, group, "c2"), max_attempts=MAX_ATTEMPTS)
    code, _ = await dlq.run("replay", group, [stored.ref], False, True, settings)
    assert code == 0
    await recorder.wait_for_count(1)
    assert recorder.ids == [event.id]
    assert await open_store(settings).list(group) == []


async def test_a_queue_declared_without_the_net_is_used_as_it_is(
    backend: str,
    backend_url: str,
    make_bus: BusFactory,
    names: Names,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Queue arguments cannot change: a queue an earlier version declared keeps working."""
    topic, group = names.topic(), names.group()
    connection = await aio_pika.connect(backend_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(
            group_queue(topic, group), durable=True, arguments={"x-queue-type": "quorum"}
        )
    recorder = Recorder()
    await make_bus((topic, recorder, group, "c1"))
    publisher = await make_bus()
    event = make_event(topic, 1)
    await publisher.publish(topic, event)
    await recorder.wait_for_count(1)
    assert recorder.ids == [event.id]
    assert f"queue {group_queue(topic, group)} exists with an earlier version" in caplog.text
