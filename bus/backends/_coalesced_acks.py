"""A consumer's acknowledgements, coalesced: one round trip carries all made meanwhile.

FastStream acknowledges each event as its handler returns and waits for the answer before the
next: for Kafka (an offset commit) and Redis Streams (an `XACK`) that is a round trip to the
broker per event, in which the consumer does nothing (what that cost, and what coalescing
saved: docs/performance.md, "What was optimised").

Those two backends acknowledge here instead (`AckPolicy.MANUAL`): an acknowledgement joins a
batch and the consumer goes on to its next event; one send at a time carries every
acknowledgement made while the previous one was on the wire. Nothing is lost by the delay:
an event whose acknowledgement had not reached the broker when the process died is delivered
again (Kafka re-reads from the committed offset, Redis reclaims the pending entry) and the
inbox drops the repeat, the at-least-once the bus always gave, with a window of one round
trip. Closing drains: from then on each acknowledgement is sent before its handler returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_WAITING = 1_024
"""Bound on acknowledgements waiting to be sent: past it, `add` waits for the broker."""


class CoalescedAcks(Generic[T]):
    def __init__(self, send: Callable[[list[T]], Awaitable[None]], what: str) -> None:
        self._send = send
        self._what = what  # for the log: which group's acknowledgements
        self._waiting: list[T] = []
        self._sender: asyncio.Task[None] | None = None
        self._draining = False

    async def add(self, ack: T) -> None:
        """Queue `ack` and return at once, unless too many wait or the consumer is closing."""
        self._waiting.append(ack)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_waiting())
        if self._draining or len(self._waiting) >= MAX_WAITING:
            await self.flush()

    async def flush(self) -> None:
        """Return once every acknowledgement added so far has been sent (or failed)."""
        while self._sender is not None and not self._sender.done():
            # Shielded: a caller cancelled while it waits must not cancel others' acks.
            await asyncio.shield(self._sender)

    async def drain(self) -> None:
        """Send what waits, and from now on send each acknowledgement before `add` returns:
        the connection is about to close under the handlers still running."""
        self._draining = True
        await self.flush()

    async def _send_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await self._send(batch)
            except Exception:  # the broker delivers them again: a repeat, not a loss
                log.warning(
                    "could not acknowledge %d event(s) of %s; they will be delivered again",
                    len(batch),
                    self._what,
                    exc_info=True,
                )
