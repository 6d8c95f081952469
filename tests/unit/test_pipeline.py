"""The delivery pipeline's policy on a recording transport: what is acknowledged, retried and
dead-lettered, and in which order. (The backends' own semantics are the conformance suite's.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import pytest

from bus.pipeline import Pipeline, Route
from bus.port import Capabilities, Received
from bus.settings import BusSettings
from contracts import CloudEvent

CAPABILITIES = Capabilities(
    fan_out=True,
    competing_consumers=True,
    offline_catch_up=True,
    redelivery=True,
    per_key_ordering=True,
    ordering="per key",
)


@dataclass(frozen=True)
class Message:
    offset: int
    body: bytes
    partition: int = 0


@dataclass
class Recorder:
    """A transport that records what the pipeline did, as a partitioned log would see it."""

    redelivers_on_a_timer: bool = False
    acked: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    dead: list[dict[str, object]] = field(default_factory=list)

    def body(self, message: Message) -> bytes:
        return message.body

    async def attempt(self, message: Message) -> int:
        return 1

    def scope(self, message: Message) -> Hashable:
        return message.partition

    async def ack(self, messages: Sequence[Message]) -> None:
        self.acked.extend(m.offset for m in messages)

    async def retry(self, message: Message, delay_s: float) -> None:
        self.retried.append(message.offset)

    async def keep_alive(self, messages: Sequence[Message]) -> None:
        return

    async def dead_letter(self, record: bytes) -> None:
        self.dead.append(json.loads(record))

    async def release(self, messages: Sequence[Message]) -> None:
        return


def event(n: int) -> bytes:
    return CloudEvent(type="t", source="/tests", subject=f"order-{n}", data={"n": n}).to_json()


def pipeline(handler: object, recorder: Recorder) -> Pipeline[Message]:
    route = Route("t", "g", "c", handler, True, False)  # type: ignore[arg-type]
    settings = BusSettings(batch_linger_ms=0, max_attempts=3)
    return Pipeline(route, recorder, settings, CAPABILITIES, "memory")


async def test_a_poison_message_inside_a_batch_is_dead_lettered_alone_in_delivery_order() -> None:
    calls: list[list[int]] = []

    async def handle(batch: Sequence[Received]) -> None:
        calls.append([int(r.event.data["n"]) for r in batch])

    recorder = Recorder()
    bus = pipeline(handle, recorder)
    await bus.deliver(
        [
            Message(0, event(0)),
            Message(1, event(1)),
            Message(2, b"not an event"),
            Message(3, event(3)),
        ]
    )
    await bus.close()

    assert calls == [[0, 1, 3]], "the good events in one call, once"
    [dead] = recorder.dead
    assert str(dead["error"]).startswith("PoisonMessage: not a valid CloudEvent")
    # Kafka commits offsets: an acknowledgement ahead of unhandled ones would skip them.
    assert recorder.acked == [0, 1, 2, 3]


async def test_a_failing_event_is_isolated_and_only_it_is_retried() -> None:
    calls: list[list[int]] = []

    async def handle(batch: Sequence[Received]) -> None:
        numbers = [int(r.event.data["n"]) for r in batch]
        calls.append(numbers)
        if 1 in numbers:
            raise RuntimeError("event 1 is bad")

    recorder = Recorder()
    bus = pipeline(handle, recorder)
    # Event 1 and 2 share partition 1: 2 must wait behind the retry of 1.
    await bus.deliver(
        [
            Message(0, event(0)),
            Message(1, event(1), 1),
            Message(2, event(2), 1),
            Message(3, event(3)),
        ]
    )
    await bus.close()

    assert calls == [[0, 1, 2, 3], [0], [1], [3]]
    assert recorder.retried == [1]
    assert recorder.acked == [0, 3], "2 is held behind the retry of its partition"
    assert recorder.dead == []


async def test_a_poison_message_behind_a_retry_of_its_scope_waits_for_it() -> None:
    async def handle(batch: Sequence[Received]) -> None:
        raise RuntimeError("broken")

    recorder = Recorder()
    bus = pipeline(handle, recorder)
    await bus.deliver([Message(0, event(0)), Message(1, b"{}"), Message(2, event(2), 1)])
    await bus.close()

    # The poison one is read again after the retry of offset 0: dead-lettered then, once.
    assert recorder.retried == [0, 2]
    assert recorder.dead == []
    assert recorder.acked == []


@dataclass
class RefusingDeadLetters(Recorder):
    """A broker whose dead-letter queue refuses every record (over its limit, say)."""

    refused: int = 0

    async def dead_letter(self, record: bytes) -> None:
        self.refused += 1
        raise RuntimeError("record over the broker's limit")


async def test_a_dead_letter_that_cannot_be_written_is_told_not_acknowledged_and_backed_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Neither lost (acknowledged unwritten) nor re-read in a hot loop, and visible."""
    slept: list[float] = []

    async def no_wait(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", no_wait)  # the backoff is recorded, not waited
    told: list[str] = []
    recorder = RefusingDeadLetters()
    route = Route(
        "t", "g", "c", _unused, True, False, observers=(lambda e, d, o, x: told.append(o),)
    )
    bus = Pipeline(route, recorder, BusSettings(batch_linger_ms=0), CAPABILITIES, "memory")
    await bus.deliver([Message(0, b"not an event"), Message(1, event(1))])
    await bus.close()

    assert recorder.refused == 1
    assert told[0] == "dead_letter_failed"
    assert 0 not in recorder.acked, "a record not written: the message is not acknowledged"
    assert 0 in recorder.retried, "it comes again"
    assert slept, "after a backoff"
    assert slept[0] > 0


async def _unused(batch: Sequence[Received]) -> None:
    return
