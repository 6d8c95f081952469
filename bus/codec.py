"""Events to bytes and back, with the size bound every backend applies."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from contracts.envelope import CloudEvent


class PoisonMessage(Exception):
    """A message that can never be handled (not a valid envelope, or too large). `raw`: the
    message's bytes where the client library gave no body (a Redis Streams entry without the
    body's field: its fields, `name=value` per line), for the dead letter."""

    def __init__(self, reason: str, raw: bytes = b"") -> None:
        super().__init__(reason)
        self.raw = raw


class EventTooLarge(ValueError):
    """An event over `BUS_MAX_EVENT_BYTES` encoded: no broker will be asked to take it."""

    def __init__(self, event: CloudEvent, size: int, max_bytes: int) -> None:
        super().__init__(
            f"event {event.id} is {size} bytes encoded; the limit is {max_bytes} "
            "(BUS_MAX_EVENT_BYTES)"
        )
        self.size = size
        self.max_bytes = max_bytes


def encode(event: CloudEvent, max_bytes: int) -> bytes:
    body = event.to_json()
    if len(body) > max_bytes:
        raise EventTooLarge(event, len(body), max_bytes)
    return body


def encoded(event: CloudEvent, stamped: CloudEvent, stored: bytes | None, max_bytes: int) -> bytes:
    """The bytes to publish for `event`, as publishing stamped it (`bus.tracing.publishing`):
    `stored`, as it is, where the caller has the bytes `event` was decoded from (an outbox
    row) and the stamp changed nothing; else `stamped` encoded. Within the bound either way."""
    if stored is None or stamped is not event:
        return encode(stamped, max_bytes)
    if len(stored) > max_bytes:
        raise EventTooLarge(event, len(stored), max_bytes)
    return stored


def stored_bodies(
    events: Sequence[tuple[str, CloudEvent]], stored: Sequence[bytes] | None
) -> Sequence[bytes | None]:
    """`publish_many`'s `stored`, one per event (None: encode each event)."""
    if stored is None:
        return [None] * len(events)
    if len(stored) != len(events):
        raise ValueError(f"publish_many: {len(stored)} stored bodies for {len(events)} events")
    return stored


def decode(body: bytes, max_bytes: int) -> CloudEvent:
    if len(body) > max_bytes:
        raise PoisonMessage(f"message of {len(body)} bytes exceeds the limit of {max_bytes}")
    try:
        return CloudEvent.from_json(body)
    except ValidationError as exc:
        # Name the fields and reasons, never echo the payload (it may hold personal data).
        reasons = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise PoisonMessage(f"not a valid CloudEvent: {reasons}") from None
