"""Background loops that run until cancelled, and the libraries that lose the cancellation."""

from __future__ import annotations

import asyncio


def reraise_if_cancelled() -> None:
    """Call first in the `except Exception` of a loop that runs until it is cancelled.

    When a task is cancelled just as a timeout inside a client library expires (redis-py's
    reads, for one), the cancellation can come out as a `TimeoutError`. A loop that logs
    errors and goes on would then sleep and go on forever, and whoever cancelled it and
    waits for it hangs: seen as `orderbus demo` hanging in a bus's close. The task still
    counts the request (`Task.cancelling()`), so honour it here.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
