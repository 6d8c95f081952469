"""What happens when a handler fails: retry later, a bounded number of times, then dead-letter.

The delay grows exponentially with "equal jitter" (half fixed, half random), so replicas that
failed together do not retry together. Each backend applies it with its own mechanism; see
the table in the README. What a dead letter holds, and where it is kept: `bus.dead_letters`.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass


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
