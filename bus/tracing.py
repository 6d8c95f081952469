"""W3C trace context through the bus: the envelope's `traceparent` extension (a contract).

Publishing opens a PRODUCER span, a child of the span in progress (an HTTP request) or else of
the event's own `traceparent` (an outbox row written during that request), and stamps the
event with it. Handling opens a CONSUMER span whose parent is that `traceparent`, one per
delivery, so every attempt of a retried event shows in the same trace.

Only the OpenTelemetry API is used here. Without an SDK configured (the default; see
`services.runtime.tracing`) the spans are no-ops and events keep the `traceparent` they had.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind

from contracts.envelope import CloudEvent

TRACER = "orderbus.bus"


def traceparent() -> str | None:
    """The `traceparent` of the span in progress, if one is recording."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def _nothing_to_trace() -> bool:
    """No SDK configured and no trace in progress: a span would be a no-op carrying nothing.
    Then the bus makes none: a no-op span still costs its context switching on every
    publish (docs/performance.md, "What was optimised")."""
    return (
        isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        and not trace.get_current_span().get_span_context().is_valid
    )


def _context_of(event: CloudEvent) -> context.Context | None:
    if event.traceparent is None:
        return None
    return propagate.extract({"traceparent": event.traceparent})


@contextlib.contextmanager
def publishing(topic: str, event: CloudEvent, system: str) -> Iterator[CloudEvent]:
    """A PRODUCER span around one publish; yields the event stamped with its context."""
    if _nothing_to_trace():
        yield event  # with the `traceparent` it came with, as a no-op span would leave it
        return
    in_progress = trace.get_current_span().get_span_context().is_valid
    parent = None if in_progress else _context_of(event)
    with trace.get_tracer(TRACER).start_as_current_span(
        f"publish {topic}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": system,
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.message.id": str(event.id),
        },
    ):
        stamped = traceparent()
        yield event if stamped is None else event.model_copy(update={"traceparent": stamped})


@contextlib.contextmanager
def handling(
    topic: str, group: str, consumer: str, event: CloudEvent, attempt: int | None, system: str
) -> Iterator[str | None]:
    """A CONSUMER span around one delivery's handling; an exception marks it failed. Yields
    the span's `traceparent` (None when nothing is traced)."""
    if event.traceparent is None and _nothing_to_trace():
        yield None
        return
    attributes: dict[str, str | int] = {
        "messaging.system": system,
        "messaging.operation.type": "process",
        "messaging.destination.name": topic,
        "messaging.consumer.group.name": group,
        "messaging.client.id": consumer,
        "messaging.message.id": str(event.id),
    }
    if attempt is not None:
        attributes["messaging.message.delivery_attempt"] = attempt
    if event.correlationid is not None:
        attributes["messaging.message.conversation_id"] = event.correlationid
    with trace.get_tracer(TRACER).start_as_current_span(
        f"process {topic}",
        # The event's context, not the consumer loop's: each delivery continues its trace.
        context=_context_of(event) or context.Context(),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ):
        yield traceparent()
