"""Events go to Redis as plain commands, and concurrent ones share a round trip.

A publish that finds none in flight goes straight out; publishes that arrive while one is in
flight queue up and go out together, in arrival order, as one pipeline (`transaction=False`:
no MULTI/EXEC, only the round trip is shared). Each caller returns once Redis answered its
command. N publishes in flight thus cost one round trip and one connection, not N of each
(past redis-py's pool of 100 connections they would fail with `MaxConnectionsError`).

The commands go to redis-py directly, not through FastStream's `publish`: its command
object, correlation id and middlewares per event cost more than the command itself
(docs/performance.md, "Publishing without FastStream's chain"). Its Prometheus
middleware therefore sees no event published on Redis; `orderbus_events_published_total`
counts the outbox relay's (docs/metrics.md).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

MAX_PIPELINE = 512
"""Bound on the commands of one pipeline (and so on one reply Redis buffers for us)."""

Command = tuple[Any, ...]
"""A Redis command and its arguments, as `execute_command` takes them."""


class PipelinedPublisher:
    def __init__(self, client: Callable[[], Any]) -> None:
        self._client = client
        self._waiting: deque[tuple[Command, asyncio.Future[None]]] = deque()
        self._busy = False
        self._flusher: asyncio.Task[None] | None = None

    async def send(self, *command: Any) -> None:
        """Send `command` (e.g. `"XADD", stream, "*", field, body`); return once Redis has
        answered it; raise its error."""
        if self._busy:
            done = asyncio.get_running_loop().create_future()
            self._waiting.append((command, done))
            await done
            return
        self._busy = True
        try:
            await self._client().execute_command(*command)  # nothing else in flight
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

    async def _send_batch(self, batch: list[tuple[Command, asyncio.Future[None]]]) -> None:
        try:
            async with self._client().pipeline(transaction=False) as pipe:
                for command, _ in batch:
                    pipe.execute_command(*command)  # queued on the pipeline, not sent yet
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
