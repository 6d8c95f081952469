"""A loop that logs and goes on still stops when cancelled, even if a library lost the cancel."""

from __future__ import annotations

import asyncio

from bus.tasks import reraise_if_cancelled


async def _call_that_turns_cancel_into_timeout(started: asyncio.Event) -> None:
    started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        raise TimeoutError("read timed out") from None  # what a racing client timeout does


async def test_a_lost_cancellation_still_stops_the_loop() -> None:
    # Without reraise_if_cancelled the loop below goes on for ever and `task` is never done.
    started = asyncio.Event()

    async def loop() -> None:
        while True:
            try:
                await _call_that_turns_cancel_into_timeout(started)
            except Exception:  # noqa: BLE001 - the pattern under test: log and go on
                reraise_if_cancelled()
            started.clear()
            await asyncio.sleep(0.01)

    task = asyncio.create_task(loop())
    await started.wait()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert task in done, "the loop went on after it was cancelled"
    assert task.cancelled()
