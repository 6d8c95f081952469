"""Reading, removing and purging dead letters, for `orderbus dlq` and the services' admin
endpoints.

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
import uuid
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from bus.registry import backend_admin
from bus.retry import DeadLetter
from bus.settings import BusSettings


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
