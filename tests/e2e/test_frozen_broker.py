"""A frozen broker (every process of it stopped, its connections open: a long GC pause, a
stalled VM) is not ready, and once it thaws the bus carries on by itself.

A readiness check must ask the broker, bounded, rather than trust the client's idea of being
connected, and a check that timed out must leave the client whole: the answer that comes
late must not break its reading (it once ended nats-py's read loop, leaving a consumer that
received nothing and looked ready).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from bus import BusSettings, Delivery, create_bus
from contracts import CloudEvent
from tests.broker_containers import BrokerContainer
from tests.e2e.private_broker import PRIVATE, PrivateBroker, own_broker
from tests.polling import eventually

pytestmark = pytest.mark.timeout(180)

CHECKS_WHILE_FROZEN = 3


@pytest.fixture(params=list(PRIVATE))
def broker(request: pytest.FixtureRequest) -> Iterator[tuple[str, PrivateBroker | BrokerContainer]]:
    backend = str(request.param)
    private = own_broker(backend, password=f"s3cr3t-{uuid.uuid4().hex}")
    try:
        private.start()
        yield backend, private
    finally:  # a broker left frozen goes too
        private.close()


async def test_a_frozen_broker_is_not_ready_and_the_bus_carries_on_once_it_thaws(
    broker: tuple[str, PrivateBroker | BrokerContainer],
) -> None:
    backend, private = broker
    topic, group = f"t_{uuid.uuid4().hex[:10]}", f"g_{uuid.uuid4().hex[:8]}"
    handled: list[str] = []

    async def record(event: CloudEvent, delivery: Delivery) -> None:
        handled.append(str(event.id))

    settings = BusSettings(backend=backend, url=private.url)
    consumer, publisher = create_bus(settings), create_bus(settings)
    consumer.subscribe(topic, record, group=group, consumer="c1")
    await consumer.start()
    await publisher.start()
    try:

        async def handled_event(event_id: str) -> bool | None:
            return True if event_id in handled else None

        async def publish_and_see_it_handled() -> None:
            event = CloudEvent(source="/tests", type=topic, data={"n": len(handled)})
            await publisher.publish(topic, event)
            await eventually(lambda: handled_event(str(event.id)), within_s=60)

        await publish_and_see_it_handled()
        assert await consumer.ping()

        private.pause()
        try:
            for _ in range(CHECKS_WHILE_FROZEN):
                started = time.monotonic()
                assert not await consumer.ping(), "frozen, yet ready"
                assert time.monotonic() - started < 5, "the check is bounded"
        finally:
            private.unpause()

        async def ready() -> bool | None:
            return True if await consumer.ping() else None

        await eventually(ready, within_s=60)
        # The late answers to the checks above have arrived by now: the consumer still reads.
        for _ in range(3):
            await publish_and_see_it_handled()
    finally:
        await asyncio.gather(consumer.close(), publisher.close(), return_exceptions=True)
