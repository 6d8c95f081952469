"""`publish_many` on a client that takes events in order and confirms them later (Kafka, NATS):
the loop of `FastStreamBus`, on a stand-in client (the brokers' own behaviour is proven by the
conformance suite)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, ClassVar

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

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
        self.bodies: list[bytes] = []

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
        self.bodies.append(body)
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


class _Pipelining(_Client):
    """A client whose publishes started together keep their order (Redis's pipeline)."""

    confirms_apart: ClassVar[bool] = False
    publishes_keep_order_together: ClassVar[bool] = True

    async def _publish(self, topic: str, body: bytes, key: str) -> None:
        self.bodies.append(body)


def _stored(events: list[tuple[str, CloudEvent]]) -> list[bytes]:
    """Each event as an outbox might have stored it: not what `to_json` writes."""
    return [event.to_json().replace(b",", b", ") for _, event in events]


@pytest.mark.parametrize("client_type", [_Client, _Pipelining])
async def test_stored_bytes_go_out_as_they_are(client_type: type[_Client]) -> None:
    client = client_type([ACCEPT] * 3)
    events = _events(3)
    stored = _stored(events)
    assert await client.publish_many(events, stored=stored) == [None] * 3
    assert client.bodies == stored


@pytest.mark.parametrize("client_type", [_Client, _Pipelining])
async def test_stored_bytes_are_encoded_again_when_a_trace_stamps_the_event(
    client_type: type[_Client], spans: InMemorySpanExporter
) -> None:
    client = client_type([ACCEPT] * 2)
    events = _events(2)
    with trace.get_tracer("test").start_as_current_span("relay"):
        assert await client.publish_many(events, stored=_stored(events)) == [None] * 2
    producers = [s for s in spans.get_finished_spans() if s.kind == SpanKind.PRODUCER]
    sent = sorted((CloudEvent.from_json(body) for body in client.bodies), key=lambda e: e.data["n"])
    assert [e.id for e in sent] == [e.id for _, e in events]
    assert {e.traceparent.split("-")[2] for e in sent if e.traceparent} == {
        format(span.context.span_id, "016x") for span in producers if span.context
    }
    assert len(producers) == 2
