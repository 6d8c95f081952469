"""`publish_many` on a client that takes events in order and confirms them later (Kafka, NATS):
the loop of `FastStreamBus`, on a stand-in client (the brokers' own behaviour is proven by the
conformance suite)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, ClassVar

from bus import BusSettings
from bus.backends._faststream import FastStreamBus
from bus.backends.memory import BACKEND
from bus.pipeline import Route
from bus.port import Capabilities
from contracts import CloudEvent

ACCEPT, REFUSE_LATER, REFUSE_NOW = "accept", "refuse later", "refuse now"


class _Client(FastStreamBus[Any]):
    """Answers each event as `answers` says: accepted, refused by the broker's confirmation,
    or refused as it is handed over."""

    name: ClassVar[str] = "stand-in"
    capabilities: ClassVar[Capabilities] = BACKEND.capabilities
    confirms_apart: ClassVar[bool] = True

    def __init__(self, answers: list[str]) -> None:
        super().__init__(BusSettings(backend="memory"))
        self.answers = answers
        self.handed_over: list[int] = []

    def _create_broker(self, url: str, **common: Any) -> Any:
        return object()

    def _register(self, route: Route) -> None:
        raise NotImplementedError

    async def _publish(self, topic: str, body: bytes, key: str) -> None:
        raise AssertionError("publish_many hands events over with _start_publish")

    @staticmethod
    def publisher_arguments(topic: str) -> dict[str, Any]:
        return {}

    async def _publish_dead_letter(self, group: str, body: bytes) -> None:
        raise NotImplementedError

    async def _start_publish(self, topic: str, body: bytes, key: str) -> Awaitable[object]:
        n = CloudEvent.from_json(body).data["n"]
        if self.answers[n] == REFUSE_NOW:
            raise ConnectionError(f"event {n} not taken")
        self.handed_over.append(n)
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.answers[n] == REFUSE_LATER:
            answer.set_exception(RuntimeError(f"event {n} refused"))
        else:
            answer.set_result(None)
        return answer


def _events(count: int) -> list[tuple[str, CloudEvent]]:
    return [
        ("order_created", CloudEvent(source="/tests", type="order_created", data={"n": n}))
        for n in range(count)
    ]


async def test_every_event_is_handed_over_in_order_and_confirmed() -> None:
    client = _Client([ACCEPT] * 5)
    assert await client.publish_many(_events(5)) == [None] * 5
    assert client.handed_over == [0, 1, 2, 3, 4]


async def test_a_refused_confirmation_is_that_events_outcome() -> None:
    client = _Client([ACCEPT, REFUSE_LATER, ACCEPT])
    outcomes = await client.publish_many(_events(3))
    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], RuntimeError)
    assert client.handed_over == [0, 1, 2]


async def test_nothing_is_handed_over_after_an_event_the_client_did_not_take() -> None:
    client = _Client([ACCEPT, REFUSE_NOW, ACCEPT, ACCEPT])
    outcomes = await client.publish_many(_events(4))
    assert outcomes[0] is None
    assert all(isinstance(o, ConnectionError) for o in outcomes[1:])
    assert len(outcomes) == 4
    assert client.handed_over == [0], "nothing may overtake the event that failed"
