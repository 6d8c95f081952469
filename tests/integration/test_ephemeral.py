"""Ephemeral subscriptions (an instance's own broadcast group, `Bus.subscribe(ephemeral=True)`):
what the broker keeps for them goes with their instance, while a durable group, left just as
idle beside them, keeps its events."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aio_pika
import aiormq
import nats
import pytest
import redis.asyncio as redis
from nats.js.api import ConsumerConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from bus import Bus, Delivery, backend_info
from bus.names import dead_letters, group_queue
from contracts import CloudEvent
from tests.integration.conftest import BusFactory, Names, Recorder, make_event
from tests.integration.native import messages_in_queue, read_dead_letters
from tests.polling import eventually

pytestmark = pytest.mark.timeout(120)

EXPIRY_S = 1
"""`BUS_EPHEMERAL_EXPIRY_S` in these tests: RabbitMQ `x-expires`, NATS `inactive_threshold`."""


async def test_an_ephemeral_group_starts_at_the_end_of_the_topic(
    backend: str, make_bus: BusFactory, names: Names
) -> None:
    topic = names.topic()
    # A durable group first, so that the topic exists and holds an event before the
    # ephemeral group does (and on Kafka/NATS, a group from the start would read it).
    kept = Recorder()
    await make_bus((topic, kept, names.group(), "durable-1"))
    publisher = await make_bus()
    old = make_event(topic, 0)
    await publisher.publish(topic, old)
    await kept.wait_for_count(1)

    live = Recorder()
    await make_bus((topic, live, names.group(), "live-1"), ephemeral=True)

    async def a_marker_arrived() -> bool | None:
        # Kafka resolves "latest" just after the assignment: publish until one arrives.
        await publisher.publish(topic, make_event(topic, 1, marker=True))
        return True if live.received else None

    await eventually(a_marker_arrived)
    # Publish order holds for one consumer: had the group started earlier, `old` came first.
    assert old.id not in live.ids


async def test_an_event_past_its_attempts_is_dropped_not_dead_lettered(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    topic, group = names.topic(), names.group()
    tried = Recorder()

    async def failing(event: CloudEvent, delivery: Delivery) -> None:
        await tried(event, delivery)
        raise RuntimeError("the live view broke")

    await make_bus(
        (topic, failing, group, "live-1"), ephemeral=True, max_attempts=2, retry_backoff_ms=10
    )
    ok = Recorder()  # a durable group on the same topic: its events go on being handled
    await make_bus((topic, ok, names.group(), "durable-1"))
    publisher = await make_bus()
    event = make_event(topic, 0)
    await publisher.publish(topic, event)

    attempts = 2 if backend_info(backend).capabilities.redelivery else 1
    await tried.wait_until(lambda: len(tried.received) >= attempts)
    after = make_event(topic, 1)
    await publisher.publish(topic, after)  # handled after the drop: the group moved on
    await tried.wait_until(lambda: after.id in tried.ids)
    assert tried.ids.count(event.id) == attempts
    await ok.wait_for_count(2)
    if backend == "rabbitmq":
        assert not await _queue_exists(backend_url, dead_letters(group))
    assert await read_dead_letters(backend, backend_url, group) == []


@pytest.mark.parametrize("backend", ["rabbitmq", "nats"])
async def test_an_ephemeral_group_is_kept_while_its_consumer_runs(
    backend: str, make_bus: BusFactory, names: Names, caplog: pytest.LogCaptureFixture
) -> None:
    """Several expiries long, every event arrives: the broker never expired the group under its
    consumer (on NATS the bus would create it again, losing what came in between)."""
    topic = names.topic()
    live = Recorder()
    await make_bus(
        (topic, live, names.group(), "live-1"), ephemeral=True, ephemeral_expiry_s=EXPIRY_S
    )
    publisher = await make_bus()
    until = time.monotonic() + 4 * EXPIRY_S
    sent = 0
    while time.monotonic() < until:
        await publisher.publish(topic, make_event(topic, sent))
        sent += 1
        await live.wait_for_count(sent, timeout=10)
    assert "had expired" not in caplog.text


# -- RabbitMQ: the queue expires (x-expires) ---------------------------------------------------


async def _queue_exists(url: str, name: str) -> bool:
    """Asked with a passive declare, which does not count as using the queue."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
    return True


async def _live_and_durable_groups(
    make_bus: BusFactory, names: Names
) -> tuple[str, str, str, Bus, Bus, Bus]:
    """An instance's ephemeral group and a service's durable one on one topic, each having
    handled an event: (topic, live group, durable group, instance, service, publisher)."""
    topic, live_group, durable_group = names.topic(), names.group(), names.group()
    live, kept = Recorder(), Recorder()
    instance = await make_bus(
        (topic, live, live_group, "live-1"), ephemeral=True, ephemeral_expiry_s=EXPIRY_S
    )
    service = await make_bus((topic, kept, durable_group, "durable-1"))
    publisher = await make_bus()
    await publisher.publish(topic, make_event(topic, 0))
    await live.wait_for_count(1)
    await kept.wait_for_count(1)
    return topic, live_group, durable_group, instance, service, publisher


@pytest.mark.parametrize("backend", ["rabbitmq"])
async def test_rabbitmq_an_ephemeral_queue_expires_once_its_instance_is_gone(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    topic, live_group, durable_group, instance, service, publisher = await _live_and_durable_groups(
        make_bus, names
    )
    assert not await _queue_exists(backend_url, dead_letters(live_group))  # no net, no dlq

    await instance.close()  # the instance is gone (a crash leaves the same: no consumer)
    await service.close()  # and so is every replica of the service
    await publisher.publish(topic, make_event(topic, 1))

    async def expired() -> bool | None:
        return (
            True if not await _queue_exists(backend_url, group_queue(topic, live_group)) else None
        )

    await eventually(expired, within_s=30)
    # The durable group's queue, idle just as long, keeps what was published meanwhile.
    assert await messages_in_queue(backend_url, group_queue(topic, durable_group)) == 1


@pytest.mark.parametrize("backend", ["rabbitmq"])
async def test_rabbitmq_an_ephemeral_queue_declared_otherwise_is_replaced(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    """A queue of the same name from an earlier version (durable arguments, no x-expires)
    would never expire: replaced, not used as it is."""
    topic, group = names.topic(), names.group()
    connection = await aio_pika.connect(backend_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(
            group_queue(topic, group), durable=True, arguments={"x-queue-type": "quorum"}
        )
    live = Recorder()
    instance = await make_bus(
        (topic, live, group, "live-1"), ephemeral=True, ephemeral_expiry_s=EXPIRY_S
    )
    publisher = await make_bus()
    await publisher.publish(topic, make_event(topic, 0))
    await live.wait_for_count(1)
    await instance.close()

    async def expired() -> bool | None:
        return True if not await _queue_exists(backend_url, group_queue(topic, group)) else None

    await eventually(expired, within_s=30)


# -- NATS: the consumer expires (inactive_threshold) -------------------------------------------


@pytest.fixture
async def jetstream(backend_url: str) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(backend_url)
    yield client.jetstream()
    await client.drain()


async def _consumer_exists(js: JetStreamContext, stream: str, name: str) -> bool:
    try:
        await js.consumer_info(stream, name)
    except NotFoundError:
        return False
    return True


@pytest.mark.parametrize("backend", ["nats"])
async def test_nats_an_ephemeral_consumer_expires_once_its_instance_is_gone(
    backend: str, make_bus: BusFactory, names: Names, jetstream: JetStreamContext
) -> None:
    (
        topic,
        live_group,
        durable_group,
        instance,
        service,
        _publisher,
    ) = await _live_and_durable_groups(make_bus, names)

    await instance.close()
    await service.close()

    async def expired() -> bool | None:
        return True if not await _consumer_exists(jetstream, topic, live_group) else None

    await eventually(expired, within_s=30)
    assert await _consumer_exists(jetstream, topic, durable_group)


@pytest.mark.parametrize("backend", ["nats"])
async def test_nats_an_ephemeral_consumer_expired_under_its_instance_is_created_again(
    backend: str, make_bus: BusFactory, names: Names, jetstream: JetStreamContext
) -> None:
    """What a connection cut longer than the expiry does: nats-py's fetches would then time
    out forever, silently; the bus notices and creates the consumer again."""
    topic, group = names.topic(), names.group()
    live = Recorder()
    await make_bus((topic, live, group, "live-1"), ephemeral=True, ephemeral_expiry_s=EXPIRY_S)
    publisher = await make_bus()
    await jetstream.delete_consumer(topic, group)

    async def flowing_again() -> bool | None:
        await publisher.publish(topic, make_event(topic, 0))
        return True if live.received else None

    await eventually(flowing_again, within_s=30)


@pytest.mark.parametrize("backend", ["nats"])
async def test_nats_an_ephemeral_consumer_declared_otherwise_is_replaced(
    backend: str, make_bus: BusFactory, names: Names, jetstream: JetStreamContext
) -> None:
    """nats-py would use a consumer of the same name without an expiry (an earlier version's)
    as it is, and it would never go."""
    topic, group = names.topic(), names.group()
    await jetstream.add_stream(name=topic, subjects=[topic])
    await jetstream.add_consumer(topic, ConsumerConfig(durable_name=group))
    live = Recorder()
    instance = await make_bus(
        (topic, live, group, "live-1"), ephemeral=True, ephemeral_expiry_s=EXPIRY_S
    )
    publisher = await make_bus()
    await publisher.publish(topic, make_event(topic, 0))
    await live.wait_for_count(1)
    await instance.close()

    async def expired() -> bool | None:
        return True if not await _consumer_exists(jetstream, topic, group) else None

    await eventually(expired, within_s=30)


# -- Redis Streams: the group is destroyed on close --------------------------------------------


@pytest.mark.parametrize("backend", ["redis-streams"])
async def test_redis_streams_an_ephemeral_group_is_destroyed_on_close(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    topic, live_group, durable_group = names.topic(), names.group(), names.group()
    live, kept = Recorder(), Recorder()
    instance = await make_bus((topic, live, live_group, "live-1"), ephemeral=True)
    service = await make_bus((topic, kept, durable_group, "durable-1"))
    publisher = await make_bus()
    await publisher.publish(topic, make_event(topic, 0))
    await live.wait_for_count(1)
    await kept.wait_for_count(1)

    await instance.close()
    await service.close()

    client = redis.from_url(backend_url)
    try:
        groups = {g["name"].decode() for g in await client.xinfo_groups(topic)}
    finally:
        await client.aclose()
    assert groups == {durable_group}
