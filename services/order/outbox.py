"""The outbox relay: publishes what the order transactions wrote to the outbox table.

An order and its event commit together; the relay publishes each row, waits for the broker
to accept it, then marks it sent. If the broker is down, rows wait and are published when it
returns; a crash between publish and mark publishes a row twice, which the inboxes absorb.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from sqlalchemy import select, update

from contracts import CloudEvent
from services.order.store import outbox
from services.runtime.app import Runtime

log = logging.getLogger(__name__)

BATCH = 100


class OutboxRelay:
    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.failing = False

    async def run(self, runtime: Runtime) -> None:
        while True:
            # Clear before reading the table, so a wake-up set while we publish is kept.
            self.wake.clear()
            try:
                while await self.publish_pending(runtime) == BATCH:
                    pass  # a full batch: there may be more right behind it
            except Exception as exc:
                # Once with the traceback, then one line per retry: an outage of an hour
                # should not write an hour of tracebacks.
                log.warning(
                    "outbox relay: publishing failed (%s); retrying every %.1fs",
                    type(exc).__name__,
                    runtime.settings.outbox_poll_s,
                    exc_info=not self.failing,
                )
                self.failing = True
            else:
                if self.failing:
                    log.info("outbox relay: publishing again")
                self.failing = False
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # that lands as the wake-up completes, and shutdown then waits forever on the relay.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(runtime.settings.outbox_poll_s):
                    await self.wake.wait()

    async def publish_pending(self, runtime: Runtime) -> int:
        async with runtime.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(outbox.c.seq, outbox.c.topic, outbox.c.payload)
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.seq)
                    .limit(BATCH)
                )
            ).all()
        for seq, topic, payload in rows:
            event = CloudEvent.from_json(payload)
            await runtime.bus.publish(topic, event)  # returns once the broker has it
            async with runtime.engine.begin() as conn:
                await conn.execute(
                    update(outbox).where(outbox.c.seq == seq).values(published_at=datetime.now(UTC))
                )
            runtime.metrics.count(runtime.metrics.published, event.type)
            log.info("published %s %s for order %s", event.type, event.id, event.subject)
        return len(rows)
