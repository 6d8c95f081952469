"""Memory-backend behaviour that the conformance suite does not reach: shutdown and bounds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest

from bus import BusSettings, Delivery, codec, create_bus
from bus.backends.memory import bus as memory_bus
from bus.port import BatchHandler, Handler, Received
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


async def test_an_event_published_with_its_stored_bytes_is_not_decoded_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The outbox relay publishes the bytes it decoded each event from: the embedded default
    hands its groups that event, with no decoding at all."""
    decodings: list[bytes] = []

    def counted(body: bytes, max_bytes: int) -> CloudEvent:
        decodings.append(body)
        return codec.decode(body, max_bytes)

    monkeypatch.setattr(memory_bus, "decode", counted)
    config = settings()
    seen: list[CloudEvent] = []
    done = asyncio.Event()

    async def record(ev: CloudEvent, delivery: Delivery) -> None:
        seen.append(ev)
        done.set()

    consumer, publisher = create_bus(config), create_bus(config)
    consumer.subscribe("t_unit", record, group="a", consumer="a-1")
    await consumer.start()
    stored = event(1).to_json().replace(b",", b", ")
    sent = CloudEvent.from_json(stored)
    await publisher.publish_many([("t_unit", sent)], stored=[stored])
    await asyncio.wait_for(done.wait(), 10)
    await consumer.close()
    assert decodings == []
    assert seen == [sent]
    assert seen[0] is sent

    # Without its bytes, an event is encoded when published and decoded by the first group.
    done.clear()
    consumer = create_bus(config)
    consumer.subscribe("t_unit", record, group="a", consumer="a-1")
    await consumer.start()
    await publisher.publish_many([("t_unit", sent)])
    await asyncio.wait_for(done.wait(), 10)
    await consumer.close()
    assert decodings == [sent.to_json()]


async def test_a_burst_is_shared_between_competing_consumers() -> None:
    """A consumer takes up to the prefetch, but no more than its share of what waits: with
    the prefetch above the burst, one consumer would otherwise take all of it."""
    config = settings(prefetch=64, batch_linger_ms=0)
    batches: dict[str, list[list[int]]] = {"c1": [], "c2": []}
    done = asyncio.Event()

    def take(consumer: str) -> BatchHandler:
        async def handle(batch: Sequence[Received]) -> None:
            batches[consumer].append([r.event.data["i"] for r in batch])
            if sum(len(b) for bs in batches.values() for b in bs) == 20:
                done.set()

        return handle

    consumers = [create_bus(config), create_bus(config)]
    for name, bus in zip(("c1", "c2"), consumers, strict=True):
        bus.subscribe_batch("t_unit", take(name), group="g", consumer=name)
        await bus.start()
    publisher = create_bus(config)
    await publisher.start()

    try:
        await publisher.publish_many([("t_unit", event(i)) for i in range(20)])
        await asyncio.wait_for(done.wait(), timeout=10)
    finally:
        for bus in [*consumers, publisher]:
            await bus.close()

    taken = {name: [i for b in bs for i in b] for name, bs in batches.items()}
    assert sorted(taken["c1"] + taken["c2"]) == list(range(20)), "each event once"
    assert taken["c1"], f"c2 took the whole burst: {batches}"
    assert taken["c2"], f"c1 took the whole burst: {batches}"
    assert max(len(b) for bs in batches.values() for b in bs) <= 10, batches
