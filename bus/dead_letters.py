"""Dead letters: the record of one entry of `dlq.<group>` (`DeadLetter`), and the store that
reads, removes and purges them, for `orderbus dlq` and the services' admin endpoints.

The bus writes a record when a handler has failed its last attempt (`bus.retry`) or a message
cannot be an event. It keeps the message exactly as it arrived, so it can be replayed, with
the error, its traceback, the attempt count, and where it came from.

FastStream publishes and consumes; it cannot browse a queue or delete one entry of a stream,
so each backend's `admin.py` uses the broker's own client. Each entry is named by a `ref`
the broker understands: a stream entry id (Redis), a dead letter's id (RabbitMQ), `partition:offset`
(Kafka), a stream sequence (NATS) or a dead letter's id (memory, which only the process
running the bus can see).

An entry that is not a dead-letter record (anything can write to a stream or a queue) is
listed as malformed, with its raw bytes and why, so that one bad entry never breaks the
listing, and can be purged; it is never replayed.
"""

from __future__ import annotations

import hashlib
import traceback
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from pydantic import AwareDatetime, BaseModel, Field, ValidationError

from bus.registry import backend_admin
from bus.settings import BusSettings
from contracts.ids import new_id


class DeadLetter(BaseModel):
    """One entry of `dlq.<group>`."""

    id: uuid.UUID = Field(default_factory=new_id)
    topic: str
    group: str
    consumer: str
    attempts: int
    error: str
    traceback: str | None = None
    failed_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    event_id: str | None = None
    envelope: str
    """The message body exactly as received (invalid UTF-8 replaced), ready to replay; cut
    short if the record would not fit (`truncated`)."""
    truncated: bool = False
    """The envelope is only the start of the message: the record had to fit the broker's
    limit. `envelope_bytes` and `envelope_sha256` identify the original (still in its topic
    on Kafka and Redis Streams until retention removes it, found by `event_id`)."""
    envelope_bytes: int | None = None
    envelope_sha256: str | None = None

    @classmethod
    def of(
        cls,
        body: bytes,
        *,
        topic: str,
        group: str,
        consumer: str,
        attempts: int,
        error: BaseException | str,
        event_id: str | None = None,
    ) -> DeadLetter:
        if isinstance(error, BaseException):
            text = f"{type(error).__name__}: {error}"
            trace = "".join(traceback.format_exception(error))[-8_000:]
        else:
            text, trace = error, None
        return cls(
            topic=topic,
            group=group,
            consumer=consumer,
            attempts=attempts,
            error=text[:2_000],
            traceback=trace,
            event_id=event_id,
            envelope=body.decode("utf-8", errors="replace"),
        )

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    def fitted(self, max_bytes: int) -> bytes:
        """The record encoded in at most `max_bytes`: as it is if it fits, else with the
        envelope cut short and marked so (JSON escaping can make a body several times its
        size, so the cut is found by trying, shrinking in proportion)."""
        record = self.to_json()
        if len(record) <= max_bytes:
            return record
        original = self.envelope.encode()
        cut = self.model_copy(
            update={
                "truncated": True,
                "envelope_bytes": len(original),
                "envelope_sha256": hashlib.sha256(original).hexdigest(),
                "traceback": (self.traceback or "")[-2_000:] or None,
            }
        )
        keep = len(self.envelope)
        for _ in range(8):
            keep = max(0, keep * (max_bytes - 512) // max(len(record), 1))
            record = cut.model_copy(update={"envelope": self.envelope[:keep]}).to_json()
            if len(record) <= max_bytes:
                return record
        return cut.model_copy(update={"envelope": ""}).to_json()


@dataclass(frozen=True)
class Stored:
    ref: str
    letter: DeadLetter
    malformed: str | None = None
    """Why the entry is not a dead-letter record; `letter` then only carries its raw bytes."""


def parse(ref: str, raw: bytes | str | None, group: str) -> Stored:
    """The entry `ref` of `dlq.<group>` as a dead letter, or as malformed, never an error."""
    body = raw.encode() if isinstance(raw, str) else raw or b""
    try:
        return Stored(ref, DeadLetter.model_validate_json(body))
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) or "-" for e in exc.errors()[:5])
        reason = f"not a dead-letter record ({fields or 'empty'})"
    digest = hashlib.sha256(body).hexdigest()
    letter = DeadLetter(
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"orderbus-dlq:{group}:{digest}"),
        topic="",
        group=group,
        consumer="",
        attempts=0,
        error=f"malformed entry: {reason}",
        envelope=body.decode("utf-8", errors="replace"),
    )
    return Stored(ref, letter, reason)


class DeadLetterStore(Protocol):
    removes_single_entries: bool

    async def list(self, group: str) -> list[Stored]: ...

    async def remove(self, group: str, refs: set[str]) -> int: ...

    async def purge(self, group: str) -> int: ...


def open_store(settings: BusSettings) -> DeadLetterStore:
    """The store of `settings`' backend (its `admin.py`); each call connects afresh."""
    return backend_admin(settings.backend).dead_letters(settings.resolved_url)
