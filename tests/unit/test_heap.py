"""A started server keeps the garbage collector off what it built to start, and only that."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette

from services.runtime.shutdown import Deadline, GracefulServer
from tests.polling import eventually


def _scanned(value: object) -> bool:
    """Whether the collector still scans `value` (`gc.get_objects` leaves the frozen out)."""
    return any(o is value for o in gc.get_objects())


async def test_a_started_server_keeps_the_collector_off_what_start_up_left_alive() -> None:
    made_before = [1]  # lists are always tracked by the collector
    made_at_start: list[list[int]] = []

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        made_at_start.append([2])
        yield

    assert _scanned(made_before)
    config = uvicorn.Config(
        Starlette(lifespan=lifespan), host="127.0.0.1", port=0, log_level="warning"
    )
    server = GracefulServer(config, Deadline(5, "test server"))
    serving = asyncio.create_task(server.serve())

    async def started() -> bool | None:
        assert not serving.done(), "the server stopped during start-up"
        return True if server.started else None

    try:
        await eventually(started, within_s=10)
        assert not _scanned(made_before)
        assert not _scanned(made_at_start[0])
        made_after = [3]
        assert _scanned(made_after)  # what is made afterwards is collected as before
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        gc.unfreeze()  # the rest of the test session as it was
