"""Concurrent publishes to Redis share one round trip: a pipeline per burst.

FastStream sends each publish as its own command on a pooled connection, so N publishes in
flight cost N round trips and N connections: past redis-py's pool of 100 they fail with
`MaxConnectionsError` (the order relay, or any service publishing from many tasks, hits it).
Here a publish that finds none in flight goes straight out, as before; publishes that arrive
while one is in flight queue up and go out together, in arrival order, as one pipeline
(`transaction=False`: no MULTI/EXEC, only the round trip is shared). Each still passes
through FastStream's `publish` (its middlewares, Prometheus included, see every one), which
accepts a pipeline for exactly this; each caller returns once Redis answered its command.

What it saved, and what remains (FastStream's own work per publish, its command objects and
middlewares, kept on purpose so that its Prometheus middleware still counts every publish):
docs/performance.md, "What was optimised".
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[Any], Awaitable[Any]]
"""Publishes one message through FastStream, given a pipeline to queue it on, or None."""

MAX_PIPELINE = 512
"""Bound on the commands of one pipeline (and so on one reply Redis buffers for us)."""


class PipelinedPublisher:
    def __init__(self, pipeline: Callable[[], Any]) -> None:
        self._pipeline = pipeline
        self._waiting: deque[tuple[Send, asyncio.Future[None]]] = deque()
        self._busy = False
        self._flusher: asyncio.Task[None] | None = None

    async def publish(self, send: Send) -> None:
        if self._busy:
            done = asyncio.get_running_loop().create_future()
            self._waiting.append((send, done))
            await done
            return
        self._busy = True
        try:
            await send(None)  # nothing else in flight: one command, no pipeline
        finally:
            if self._waiting:
                self._flusher = asyncio.create_task(self._flush())
            else:
                self._busy = False

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch = [
                    self._waiting.popleft() for _ in range(min(MAX_PIPELINE, len(self._waiting)))
                ]
                await self._send_batch(batch)
        finally:
            self._busy = False

    async def _send_batch(self, batch: list[tuple[Send, asyncio.Future[None]]]) -> None:
        try:
            async with self._pipeline() as pipe:
                for send, _ in batch:
                    await send(pipe)  # queued on the pipeline, not sent yet
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            replies = [exc] * len(batch)
        for (_, done), reply in zip(batch, replies, strict=True):
            if done.done():
                continue  # its caller was cancelled
            if isinstance(reply, Exception):
                done.set_exception(reply)
            else:
                done.set_result(None)
