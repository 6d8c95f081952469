"""Shutdown that always ends: one deadline for all of it, however a library behaves.

The first SIGTERM or SIGINT starts an orderly stop (uvicorn drains HTTP, then the lifespan
stops the background work, the bus and the database) and arms a watchdog thread. Past
`ORDERBUS_SHUTDOWN_TIMEOUT_S` the watchdog logs every asyncio task still pending, with where
each one is suspended, and ends the process with `EXIT_OVERRAN`. What the process held
unacknowledged is redelivered by the broker, so this loses nothing. A second signal ends the
process at once.

A thread, not a task: what overruns is often a task that swallowed its cancellation (redis-py
on Python 3.11 returns normally from a command cancelled as it completes, see
docs/delivery-guarantees.md), and asyncio.run waits for such tasks too, after the lifespan.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Iterable
from types import FrameType
from typing import Any

import uvicorn

from services.runtime import heap

log = logging.getLogger(__name__)

EXIT_OVERRAN = 70
"""Exit status of a process whose shutdown overran its deadline (EX_SOFTWARE)."""
REPORT_WAIT_S = 2.0
"""How long the watchdog waits for the event loop to list its tasks."""


def describe_tasks(tasks: Iterable[asyncio.Task[Any]], frames: int = 16) -> str:
    """One paragraph per task: its name and coroutine, then where it is suspended, following
    the chain of awaits (innermost last, at most `frames` of them)."""
    lines: list[str] = []
    for task in sorted(tasks, key=lambda t: t.get_name()):
        coro = task.get_coro()
        lines.append(f"task {task.get_name()}: {getattr(coro, '__qualname__', repr(coro))}")
        chain = _awaits(coro)
        if not chain:
            lines.append("    (not started, or finishing)")
        for frame in chain[-frames:]:
            code = frame.f_code
            lines.append(f"    {code.co_filename}:{frame.f_lineno} in {code.co_name}")
    return "\n".join(lines)


def _awaits(awaitable: object) -> list[FrameType]:
    """The frames of a suspended coroutine and of what it awaits, outermost first (a task's
    own `get_stack` shows only the outermost)."""
    found: list[FrameType] = []
    while awaitable is not None and len(found) < 100:
        frame = next(
            (f for a in ("cr_frame", "gi_frame", "ag_frame") if (f := getattr(awaitable, a, None))),
            None,
        )
        if frame is None:
            break
        found.append(frame)
        awaitable = next(
            (
                inner
                for a in ("cr_await", "gi_yieldfrom", "ag_await")
                if (inner := getattr(awaitable, a, None)) is not None
            ),
            None,
        )
    return found


def pending_tasks(loop: asyncio.AbstractEventLoop) -> str:
    """`describe_tasks` of every task of `loop` but the caller's; call it on the loop."""
    current = asyncio.current_task(loop)
    tasks = [t for t in asyncio.all_tasks(loop) if t is not current and not t.done()]
    return describe_tasks(tasks) if tasks else "no task pending"


async def settle(
    tasks: Iterable[asyncio.Future[Any]],
    seconds: float,
    what: str,
    *,
    cancel: bool = True,
) -> bool:
    """Wait up to `seconds` for `tasks` to end; return whether they all did. Those still
    running are logged with where they are stuck, then (`cancel`) cancelled, with a moment
    more to unwind, and left behind if even that fails. Never raises what the tasks raise."""
    pending: set[asyncio.Future[Any]] = {asyncio.ensure_future(t) for t in tasks}
    done: set[asyncio.Future[Any]] = set()
    if pending:
        done, pending = await asyncio.wait(pending, timeout=seconds)
    if pending:
        log.warning(
            "%s still running after %.0f s%s:\n%s",
            what,
            seconds,
            "; cancelling" if cancel else "",
            describe_tasks(t for t in pending if isinstance(t, asyncio.Task)),
        )
    if pending and cancel:
        for task in pending:
            task.cancel()
        more, pending = await asyncio.wait(pending, timeout=1.0)
        done |= more
    for task in done:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("%s: %s", what, type(error).__name__, exc_info=error)
    if pending:
        log.error("%s did not end; left behind", what)
    return not pending


def _thread_stacks() -> str:
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        stack = "".join(traceback.format_stack(frame, limit=12))
        parts.append(f"thread {names.get(ident, ident)}:\n{stack}")
    return "\n".join(parts)


class Deadline:
    """Armed once, at the first stop signal; ends the process if it is still alive after
    `seconds`. It cannot be disarmed: a process that stopped in time has exited already."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: threading.Timer | None = None

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def arm(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._timer is not None:
            return
        self._loop = loop
        self._timer = threading.Timer(self.seconds, self.expire)
        self._timer.daemon = True  # a process that stopped in time does not wait for it
        self._timer.start()

    def expire(self) -> None:
        """Log what is still pending and end the process (runs on the watchdog thread)."""
        report = self._ask_loop()
        if report is None:
            report = "the event loop did not answer; every thread's stack:\n" + _thread_stacks()
        log.error(
            "%s: shutdown overran its %.0f s deadline (ORDERBUS_SHUTDOWN_TIMEOUT_S); exiting "
            "with %d, what it held unacknowledged is delivered again. Still pending:\n%s",
            self.what,
            self.seconds,
            EXIT_OVERRAN,
            report,
        )
        _flush_logs()
        os._exit(EXIT_OVERRAN)

    def _ask_loop(self) -> str | None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return None
        answer: list[str] = []
        answered = threading.Event()

        def report() -> None:
            answer.append(pending_tasks(loop))
            answered.set()

        try:
            loop.call_soon_threadsafe(report)
        except RuntimeError:  # closed meanwhile
            return None
        return answer[0] if answered.wait(REPORT_WAIT_S) else None


def exit_now(signum: int, what: str) -> None:
    """A second stop signal: end the process at once, as its sender asked."""
    log.warning("%s: second %s, exiting now", what, signal.Signals(signum).name)
    _flush_logs()
    os._exit(128 + signum)


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()


class GracefulServer(uvicorn.Server):
    """uvicorn's server, whose shutdown has one deadline and whose second signal exits.

    uvicorn itself forces an exit only on a second SIGINT, and even then waits for the
    application's lifespan shutdown without a bound."""

    def __init__(self, config: uvicorn.Config, deadline: Deadline) -> None:
        super().__init__(config)
        self.deadline = deadline
        self._loop: asyncio.AbstractEventLoop | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            exit_now(sig, self.deadline.what)
        self.deadline.arm(self._loop)
        super().handle_exit(sig, frame)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:  # the lifespan has started the service and the port is bound
            heap.freeze_started()
