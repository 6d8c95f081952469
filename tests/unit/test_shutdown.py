"""Shutdown's bounds: a task that swallows its cancellation is reported and left behind, and
the deadline ends a process whatever its event loop is doing."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap

import pytest

from services.runtime.shutdown import EXIT_OVERRAN, describe_tasks, settle


async def _swallows_cancellation(stopping: asyncio.Event | None = None) -> None:
    """What a client library does on Python 3.11 when a cancel lands as its call completes
    (redis-py, see tests/integration/test_cancellation.py): the call returns normally."""
    while stopping is None or not stopping.is_set():
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            continue


async def test_a_task_that_swallows_its_cancellation_is_reported_and_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopping = asyncio.Event()
    task = asyncio.create_task(_swallows_cancellation(stopping), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, "services.runtime.shutdown"):
        ended = await settle([task], 0.2, "test loops")
    assert not ended
    assert not task.done()
    report = caplog.text
    assert "test loops still running after 0 s; cancelling" in report
    assert "test loops did not end; left behind" in report
    assert "task stubborn: _swallows_cancellation" in report
    assert "test_shutdown.py" in report  # where it is suspended
    stopping.set()  # let it go, or the test's own loop would wait for it forever
    await asyncio.wait([task], timeout=1)
    assert task.done()


async def test_a_loop_that_checks_its_stop_flag_ends_despite_swallowing() -> None:
    stopping = asyncio.Event()
    task = asyncio.create_task(_swallows_cancellation(stopping))
    await asyncio.sleep(0)
    stopping.set()
    assert await settle([task], 1.0, "flagged loop")


async def test_settle_reports_what_a_task_raised_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails() -> None:
        raise ConnectionError("broker gone")

    with caplog.at_level(logging.WARNING, "services.runtime.shutdown"):
        assert await settle([asyncio.ensure_future(fails())], 1.0, "bus close")
    assert "bus close: ConnectionError" in caplog.text


async def test_describe_tasks_names_each_coroutine_and_frame() -> None:
    gate = asyncio.Event()

    async def waits_for_gate() -> None:
        await gate.wait()

    task = asyncio.create_task(waits_for_gate(), name="gated")
    await asyncio.sleep(0)
    text = describe_tasks([task])
    gate.set()
    await task
    assert (
        text.splitlines()[0]
        == "task gated: test_describe_tasks_names_each_coroutine_and_frame.<locals>.waits_for_gate"
    )
    assert "in waits_for_gate" in text


PROGRAM = """
import asyncio, logging, sys, time
from services.runtime.shutdown import Deadline
logging.basicConfig(level=logging.INFO)

async def stuck_forever():
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass

async def main(block_loop):
    asyncio.create_task(stuck_forever(), name="stuck")
    Deadline(0.5, "test process").arm(asyncio.get_running_loop())
    if block_loop:
        time.sleep(30)  # the loop itself never turns again
    await asyncio.sleep(30)

asyncio.run(main(sys.argv[1] == "block"))
"""


@pytest.mark.parametrize("mode", ["tasks", "block"])
def test_the_deadline_ends_the_process_and_says_what_was_pending(mode: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROGRAM), mode],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == EXIT_OVERRAN, done.stderr
    assert "test process: shutdown overran its 0 s deadline" in done.stderr
    if mode == "tasks":
        assert "task stuck: stuck_forever" in done.stderr
    else:  # the loop could not answer: every thread's stack instead
        assert "the event loop did not answer" in done.stderr
        assert "in main" in done.stderr
