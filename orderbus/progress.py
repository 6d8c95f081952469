"""A progress line for the long commands (`orderbus soak`, `orderbus bench`), on stderr and
only where stderr is a terminal: rewritten in place at most a few times a second, and nothing
at all in a pipe, a file or a CI log, whose readers want the result, not the ticking."""

from __future__ import annotations

import sys
import time
from typing import TextIO

MIN_INTERVAL_S = 0.2


class Progress:
    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None):
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0
        self._width = 0

    def update(self, done: int, note: str = "") -> None:
        """Show `done` (of the total); skipped when the line was written a moment ago,
        unless this is the last step."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < MIN_INTERVAL_S and done != self.total:
            return
        self._last = now
        count = f"{done}/{self.total}" if self.total is not None else str(done)
        line = f"{self.label}: {count}" + (f" {note}" if note else "")
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def done(self) -> None:
        """End the line, so what is printed next starts on a line of its own."""
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
