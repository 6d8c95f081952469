"""Redis pub/sub: a subscriber whose Redis dies and comes back listens again by itself.

Pub/sub keeps nothing, so what is published while Redis is down, or before the subscriber has
subscribed again, is lost (the backend's documented "no"); what is published once it has must
arrive, without restarting the bus, and the password in the URL appears in no log line.

The Redis is the test's own (a process, or a container with `ORDERBUS_BROKERS=containers`),
since the test kills it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest

from bus import BusSettings, Delivery, create_bus
from contracts import CloudEvent
from tests.broker_containers import BrokerContainer
from tests.e2e.private_broker import PrivateBroker, own_broker
from tests.polling import eventually

pytestmark = pytest.mark.timeout(180)

TOPIC = "live_updates"


@pytest.fixture
def redis() -> Iterator[PrivateBroker | BrokerContainer]:
    # The Redis Streams recipe: the same server, both backends use it.
    private = own_broker("redis-streams", password=f"s3cr3t-{uuid.uuid4().hex}")
    try:
        private.start()
        yield private
    finally:
        private.close()


def _event(n: int) -> CloudEvent:
    return CloudEvent(type="order_created", source="tests", subject=f"order-{n}", data={"n": n})


async def test_a_subscriber_listens_again_after_redis_restarts(
    redis: PrivateBroker | BrokerContainer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = BusSettings(backend="redis-pubsub", url=redis.url)
    received: list[int] = []

    async def handle(event: CloudEvent, delivery: Delivery) -> None:
        received.append(event.data["n"])

    subscriber = create_bus(settings)
    subscriber.subscribe(TOPIC, handle, group="watcher", consumer="watcher-1")
    await subscriber.start()
    publisher = create_bus(settings)
    await publisher.start()
    numbers = itertools.count()

    def arrived_after(mark: int) -> Callable[[], Awaitable[bool | None]]:
        async def probe() -> bool | None:
            """Publish one more event; True once one published after `mark` has arrived. A
            publish fails while the publisher's own connection comes back."""
            with contextlib.suppress(Exception):
                await publisher.publish(TOPIC, _event(next(numbers)))
            return True if any(n > mark for n in received) else None

        return probe

    def logged(text: str) -> Callable[[], Awaitable[bool | None]]:
        async def probe() -> bool | None:
            return True if any(text in r.getMessage() for r in caplog.records) else None

        return probe

    try:
        await eventually(arrived_after(-1))
        redis.kill()
        # Down for longer than redis-py's own reconnects last: the listener's loop takes over.
        await eventually(logged("lost the subscription of"), 60)
        redis.start()
        await eventually(arrived_after(next(numbers)), 60)
        await eventually(logged(f"subscribed to {TOPIC}/watcher again"))
    finally:
        await publisher.close()
        await subscriber.close()
    for record in caplog.records:
        assert redis.password not in record.getMessage()
