"""Memory-backend behaviour that the conformance suite does not reach: shutdown and bounds."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from bus import BusSettings, Delivery, codec, create_bus
from bus.backends.memory import bus as memory_bus
from bus.port import Handler
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


async def test_groups_share_one_decoding_of_each_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """Encoded once when published (the size bound), decoded once for every group, a retry
    included: the embedded default does not pay a JSON round trip per group."""
    decodings: list[bytes] = []

    def counted(body: bytes, max_bytes: int) -> CloudEvent:
        decodings.append(body)
        return codec.decode(body, max_bytes)

    monkeypatch.setattr(memory_bus, "decode", counted)
    seen: dict[str, list[CloudEvent]] = {"a": [], "b": [], "c": []}
    failed_once: set[str] = set()

    def recorder(group: str) -> Handler:
        async def record(ev: CloudEvent, delivery: Delivery) -> None:
            if group == "c" and group not in failed_once:
                failed_once.add(group)
                raise RuntimeError("the first attempt fails: retried")
            seen[group].append(ev)
            if all(seen.values()):
                done.set()

        return record

    done = asyncio.Event()
    config = settings(retry_backoff_ms=1)
    consumer, publisher = create_bus(config), create_bus(config)
    for group in seen:
        consumer.subscribe("t_unit", recorder(group), group=group, consumer=f"{group}-1")
    await consumer.start()
    sent = event(1)
    await publisher.publish("t_unit", sent)
    await asyncio.wait_for(done.wait(), 10)
    await consumer.close()
    await publisher.close()
    assert len(decodings) == 1
    received = [events[0] for events in seen.values()]
    assert all(ev is received[0] for ev in received), "one decoded event, shared"
    assert (received[0].id, received[0].data) == (sent.id, {"i": 1})
