"""Faults an operator injects from the dashboard, to watch the system cope: make the next
events fail, or pause an instance. Admin endpoints only (`services.runtime.control_routes`).

`fail_next(k)`: the next `k` events this instance has not seen fail, and keep failing on every
redelivery this instance gets, so they exhaust their retries and reach the dead-letter queue
(a redelivery taken by another replica succeeds there: each instance knows only its own).
`pause(s)`: the instance stops handling (events it already holds wait, the others go to its
replicas or pile up) until `resume()` or for at most `s` seconds.
"""

from __future__ import annotations

import asyncio
from collections import deque

MAX_FAIL_NEXT = 1_000
MAX_PAUSE_S = 600.0


class InjectedFailure(RuntimeError):
    """Raised by a handler on purpose (a dashboard's "fail next")."""


class Faults:
    def __init__(self) -> None:
        self.fail_next = 0
        self._failing: deque[str] = deque(maxlen=MAX_FAIL_NEXT)
        self._running = asyncio.Event()
        self._running.set()
        self._resume_at: asyncio.TimerHandle | None = None

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def armed(self) -> bool:
        """Whether any event may be made to fail (`check` has something to do): from the
        first `fail(k)` on, as the events chosen then fail on every redelivery."""
        return self.fail_next > 0 or bool(self._failing)

    def fail(self, count: int) -> None:
        if not 0 <= count <= MAX_FAIL_NEXT:
            raise ValueError(f"count must be 0 to {MAX_FAIL_NEXT}")
        self.fail_next = count

    def check(self, event_id: str) -> None:
        """Raise `InjectedFailure` if this event is one of those chosen to fail."""
        if event_id not in self._failing:
            if self.fail_next <= 0:
                return
            self.fail_next -= 1
            self._failing.append(event_id)
        raise InjectedFailure(f"injected failure (dashboard): event {event_id}")

    def pause(self, seconds: float) -> None:
        if not 0 < seconds <= MAX_PAUSE_S:
            raise ValueError(f"seconds must be above 0 and at most {MAX_PAUSE_S:.0f}")
        self._running.clear()
        if self._resume_at is not None:
            self._resume_at.cancel()
        self._resume_at = asyncio.get_running_loop().call_later(seconds, self.resume)

    def resume(self) -> None:
        if self._resume_at is not None:
            self._resume_at.cancel()
            self._resume_at = None
        self._running.set()

    async def wait_running(self) -> None:
        await self._running.wait()
