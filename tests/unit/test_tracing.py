"""Trace context through the bus (memory backend): publish, handle, retry; off by default."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from bus import BusSettings, Delivery, create_bus
from contracts import CloudEvent
from services.runtime.tracing import exporters_asked
from tests.integration.conftest import Recorder


def memory_settings(**overrides: object) -> BusSettings:
    return BusSettings.model_validate(
        {"backend": "memory", "url": f"memory://{uuid.uuid4().hex[:8]}"} | overrides
    )


def an_event() -> CloudEvent:
    return CloudEvent(source="/tests", type="t_trace", subject="order-1", data={})


def of_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in spans if span.kind == kind]


async def test_a_handler_span_is_a_child_of_the_publish_span(
    spans: InMemorySpanExporter,
) -> None:
    settings = memory_settings()
    received = Recorder()
    consumer, publisher = create_bus(settings), create_bus(settings)
    consumer.subscribe("t_trace", received, group="billing", consumer="billing-1")
    await consumer.start()
    try:
        with trace.get_tracer("test").start_as_current_span("POST /orders") as request:
            await publisher.publish("t_trace", an_event())
        await received.wait_for_count(1)
    finally:
        await consumer.close()
    [producer] = of_kind(spans.get_finished_spans(), SpanKind.PRODUCER)
    [handler] = of_kind(spans.get_finished_spans(), SpanKind.CONSUMER)
    trace_id = request.get_span_context().trace_id
    assert producer.parent is not None
    assert producer.parent.span_id == request.get_span_context().span_id
    assert handler.parent is not None
    assert handler.parent.span_id == producer.context.span_id
    assert {producer.context.trace_id, handler.context.trace_id} == {trace_id}
    assert handler.attributes is not None
    assert handler.attributes["messaging.consumer.group.name"] == "billing"
    [(event, _)] = received.received
    assert event.traceparent is not None
    assert event.traceparent.split("-")[2] == format(producer.context.span_id, "016x")


async def test_stored_bytes_are_not_sent_when_the_publish_span_stamps_the_event(
    spans: InMemorySpanExporter,
) -> None:
    """The outbox relay hands over each event's stored bytes; with a trace in progress the
    publish span stamps the event, so it is encoded again and carries that span's context."""
    settings = memory_settings()
    received = Recorder()
    consumer, publisher = create_bus(settings), create_bus(settings)
    consumer.subscribe("t_trace", received, group="billing", consumer="billing-1")
    await consumer.start()
    sent = an_event()
    try:
        with trace.get_tracer("test").start_as_current_span("relay"):
            await publisher.publish_many([("t_trace", sent)], stored=[sent.to_json()])
        await received.wait_for_count(1)
    finally:
        await consumer.close()
    [producer] = of_kind(spans.get_finished_spans(), SpanKind.PRODUCER)
    [(event, _)] = received.received
    assert event.id == sent.id
    assert sent.traceparent is None
    assert event.traceparent is not None
    assert event.traceparent.split("-")[2] == format(producer.context.span_id, "016x")


async def test_every_attempt_of_a_retried_event_is_in_its_trace(
    spans: InMemorySpanExporter,
) -> None:
    settings = memory_settings(retry_backoff_ms=1)
    received = Recorder()
    failed: list[int | None] = []

    async def fails_once(event: CloudEvent, delivery: Delivery) -> None:
        if not failed:
            failed.append(delivery.attempt)
            raise RuntimeError("first attempt fails")
        await received(event, delivery)

    consumer, publisher = create_bus(settings), create_bus(settings)
    consumer.subscribe("t_trace", fails_once, group="billing", consumer="billing-1")
    await consumer.start()
    try:
        await publisher.publish("t_trace", an_event())  # no span in progress: a new trace
        await received.wait_for_count(1)
    finally:
        await consumer.close()
    [producer] = of_kind(spans.get_finished_spans(), SpanKind.PRODUCER)
    attempts = of_kind(spans.get_finished_spans(), SpanKind.CONSUMER)
    assert len(attempts) == 2
    for span in attempts:
        assert span.parent is not None
        assert span.parent.span_id == producer.context.span_id
        assert span.context.trace_id == producer.context.trace_id
    by_attempt = {
        span.attributes["messaging.message.delivery_attempt"]: span
        for span in attempts
        if span.attributes is not None
    }
    assert not by_attempt[1].status.is_ok  # the failure is on the first attempt's span
    assert by_attempt[2].status.is_unset or by_attempt[2].status.is_ok


async def test_tracing_is_off_by_default_and_leaves_the_envelope_alone() -> None:
    settings = memory_settings()
    received = Recorder()
    consumer, publisher = create_bus(settings), create_bus(settings)
    consumer.subscribe("t_trace", received, group="billing", consumer="billing-1")
    await consumer.start()
    try:
        sent = an_event()
        await publisher.publish("t_trace", sent)
        await received.wait_for_count(1)
    finally:
        await consumer.close()
    [(event, _)] = received.received
    assert event == sent
    assert event.traceparent is None


async def test_without_an_sdk_a_handler_passes_its_events_trace_on() -> None:
    """The bus skips no-op spans when tracing is off, but not the context an event carries:
    a process with no exporter between two that have one must not break their trace."""
    settings = memory_settings()
    received = Recorder()
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    relay, sink = create_bus(settings), create_bus(settings)

    async def republish(event: CloudEvent, delivery: Delivery) -> None:
        await relay.publish("t_next", an_event())  # a new event, no traceparent of its own

    relay.subscribe("t_trace", republish, group="relay", consumer="relay-1")
    sink.subscribe("t_next", received, group="sink", consumer="sink-1")
    await relay.start()
    await sink.start()
    try:
        await relay.publish("t_trace", an_event().model_copy(update={"traceparent": traceparent}))
        await received.wait_for_count(1)
    finally:
        await relay.close()
        await sink.close()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    [(event, _)] = received.received
    assert event.traceparent == traceparent


@pytest.mark.parametrize(
    ("env", "asked"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp", "console"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_the_standard_variables_turn_tracing_on(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], asked: list[str]
) -> None:
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert exporters_asked() == asked


def test_configure_installs_the_exporter_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from services.runtime.tracing import configure_tracing
    from tests.conftest import reset_tracer_provider

    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # never reached
    reset_tracer_provider()
    try:
        assert configure_tracing("billing", "billing-2")
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        assert provider.resource.attributes["service.name"] == "billing"
        assert provider.resource.attributes["service.instance.id"] == "billing-2"
        provider.shutdown()
    finally:
        reset_tracer_provider()
