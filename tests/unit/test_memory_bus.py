"""Memory-backend behaviour that the conformance suite does not reach: shutdown and bounds."""

from __future__ import annotations

import asyncio
import uuid

from bus import BusSettings, Delivery, create_bus
from contracts import CloudEvent


def settings(**overrides: object) -> BusSettings:
    return BusSettings.model_validate(
        {"backend": "memory", "url": f"memory://{uuid.uuid4().hex[:8]}"} | overrides
    )


def event(i: int) -> CloudEvent:
    return CloudEvent(source="/tests", type="t_unit", data={"i": i})


async def test_close_lets_the_handler_in_flight_finish() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    finished: list[int] = []

    async def slow(ev: CloudEvent, _: Delivery) -> None:
        entered.set()
        await release.wait()
        finished.append(ev.data["i"])

    config = settings()
    consumer, publisher = create_bus(config), create_bus(config)
    consumer.subscribe("t_unit", slow, group="g", consumer="c")
    await consumer.start()
    await publisher.publish("t_unit", event(1))
    await entered.wait()

    closing = asyncio.create_task(consumer.close())
    await asyncio.sleep(0)  # let close() begin while the handler is still inside
    assert not closing.done()
    release.set()
    await closing
    assert finished == [1]


async def test_a_full_group_queue_makes_the_publisher_wait() -> None:
    gate = asyncio.Event()

    async def blocked(_: CloudEvent, __: Delivery) -> None:
        await gate.wait()

    config = settings(memory_queue_size=1)
    consumer, publisher = create_bus(config), create_bus(config)
    consumer.subscribe("t_unit", blocked, group="g", consumer="c")
    await consumer.start()
    await publisher.publish("t_unit", event(1))  # taken by the handler, which now blocks
    await publisher.publish("t_unit", event(2))  # fills the queue of one
    third = asyncio.create_task(publisher.publish("t_unit", event(3)))
    await asyncio.sleep(0.05)
    assert not third.done(), "the publisher should wait while the queue is full"
    gate.set()
    await asyncio.wait_for(third, 5)
    await consumer.close()
