"""What happens when a handler fails: retry later, a bounded number of times, then dead-letter.

The delay grows exponentially with "equal jitter" (half fixed, half random), so replicas that
failed together do not retry together. Each backend applies it with its own mechanism; see
the table in the README. A dead letter keeps the message exactly as it arrived, so it can be
replayed, with the error, its traceback, the attempt count, and where it came from.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import traceback
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, Field


@dataclass(frozen=True)
class RetryPolicy:
    """Retry until the waits add up to `budget_s`, in at most `max_attempts` deliveries.

    The budget is time, not a count: a database restart or a broker failover takes seconds to
    a minute whatever the attempt count, and an event that fails only because of it must not
    go to the dead letters. The count follows from it (`attempts`): the first attempt made at
    least `budget_s` after the first one, counting each wait at its shortest (half its ceiling,
    the jitter's floor), so every event is tried across the whole budget."""

    max_attempts: int
    backoff_ms: int
    backoff_max_ms: int
    budget_s: float = math.inf

    def _ceiling_ms(self, failed_attempt: int) -> float:
        return float(min(self.backoff_max_ms, self.backoff_ms * 2 ** min(failed_attempt - 1, 40)))

    def delay_s(self, failed_attempt: int) -> float:
        """How long to wait after attempt `failed_attempt` failed (1-based)."""
        ceiling = self._ceiling_ms(failed_attempt)
        return random.uniform(ceiling / 2, ceiling) / 1000  # noqa: S311 - jitter, not secrets

    @functools.cached_property
    def attempts(self) -> int:
        """Deliveries of one event before it is dead-lettered."""
        waited_ms, attempt = 0.0, 1
        while attempt < self.max_attempts and waited_ms < self.budget_s * 1000:
            waited_ms += self._ceiling_ms(attempt) / 2
            attempt += 1
        return attempt

    def gives_up(self, failed_attempt: int) -> bool:
        return failed_attempt >= self.attempts


class DeadLetter(BaseModel):
    """One entry of `dlq.<group>`."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
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
