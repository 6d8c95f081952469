"""The fields every per-event log line carries, so a JSON log can be searched by them.

A line per publish, handle, duplicate, retry, dead letter and drop (an ephemeral
subscription's event past its attempts), each with these fields as the record's `extra`;
`services.runtime.logs` writes them out (as JSON keys, or after the text). Publishes, handles
and duplicates of a batch are DEBUG, with one INFO line for the batch.
"""

from __future__ import annotations

from typing import Any, Literal

from contracts.envelope import CloudEvent

Action = Literal["publish", "handle", "duplicate", "retry", "dead_letter", "drop"]
FIELDS = (
    "action",
    "event_id",
    "event_type",
    "topic",
    "service",
    "instance",
    "attempt",
    "correlation_id",
    "trace_id",
)


def event_fields(
    action: Action,
    event: CloudEvent | None,
    *,
    topic: str,
    service: str | None = None,
    instance: str | None = None,
    attempt: int | None = None,
) -> dict[str, Any]:
    """`extra=` for one log line about `event` (None: a message that is not a CloudEvent)."""
    trace_id = None
    if event is not None and event.traceparent is not None:
        trace_id = event.traceparent.split("-")[1]
    return {
        "action": action,
        "event_id": str(event.id) if event is not None else None,
        "event_type": event.type if event is not None else None,
        "topic": topic,
        "service": service,
        "instance": instance,
        "attempt": attempt,
        "correlation_id": event.correlationid if event is not None else None,
        "trace_id": trace_id,
    }
