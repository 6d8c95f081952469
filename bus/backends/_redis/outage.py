"""What the bus's redis-py loops share to outlive an outage: each loop's outage logged once
as it begins and once as it ends (not once per try), and pauses between tries that end at
`close`.

A loop ends on a flag, not on cancellation alone: a cancellation that lands inside a redis-py
call can be lost (docs/delivery-guarantees.md), and the loop would run on. The pause here
waits on an event `stop` sets, so a loop in an outage sees its flag at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


class Outages:
    """The outages of one bus's loops, each named (`topic/group`)."""

    def __init__(self, backend: str, retry_s: float) -> None:
        self.backend = backend
        self.retry_s = retry_s
        """How long a loop waits before it tries again."""
        self._failing: set[str] = set()
        self._stopping = asyncio.Event()

    def ongoing(self, name: str) -> bool:
        return name in self._failing

    def begin(self, name: str, what: str, exc: BaseException) -> None:
        """`name`'s call failed with `exc`: warn, unless this outage was told already."""
        if name not in self._failing:
            self._failing.add(name)
            log.warning(
                "%s: %s %s (%s); trying again every %.0fs",
                self.backend,
                what,
                name,
                type(exc).__name__,
                self.retry_s,
            )

    def end(self, name: str, what: str) -> None:
        """`name`'s call succeeded: say so if it was in an outage."""
        if name in self._failing:
            self._failing.discard(name)
            log.info("%s: %s %s again", self.backend, what, name)

    async def wait(self, seconds: float | None = None) -> None:
        """Sleep `seconds` (`retry_s` by default), but no longer than until `stop`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.retry_s if seconds is None else seconds):
                await self._stopping.wait()

    def start(self) -> None:
        """Pauses last their time again (the loops are starting)."""
        self._stopping.clear()

    def stop(self) -> None:
        """End every pause, now and until `start`: the loops are to end."""
        self._stopping.set()
