"""Pushes that reach every notification instance's browsers, relayed through the broker.

`push` queues one `notification_pushed` event and `run` publishes what is queued, a batch at a
time (`Bus.publish_many`: one round trip on Redis), so the handler that pushed never waits for
the broker; every instance receives it (a group per instance) and `forward`s it to its own
clients that listen to that order or customer. A push is a live view, best effort: the
notification itself is already in the database (and in `GET /notifications`), so a push the
broker refuses is logged, not retried, and past `QUEUED_MAX` waiting the oldest are dropped.
While no browser is connected to any instance (`LiveClients.listened_to`), nothing is
published: there is no one to push to. Without activity reports (`ORDERBUS_ACTIVITY=false`)
the peers' browsers are unknown, so every push is published.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from contracts import NOTIFICATION_PUSHED, CloudEvent, NotificationPushed
from contracts.live import NOTIFICATION_PUSHED_SCHEMA
from services.notification.live import LiveClients
from services.runtime.service import Runtime

log = logging.getLogger(__name__)

QUEUED_MAX = 2_000
"""Pushes waiting to be published at most; past it the oldest are dropped (and counted)."""
BATCH = 64


class LiveRelay:
    def __init__(self, clients: LiveClients) -> None:
        self.clients = clients
        self._runtime: Runtime | None = None
        self._queued: deque[CloudEvent] = deque(maxlen=QUEUED_MAX)
        self._wake = asyncio.Event()
        self.dropped = 0
        """Pushes dropped unpublished: the queue was full, or the broker refused them."""
        self.unheard = 0
        """Pushes not published because no browser was connected to any instance."""

    def bind(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @property
    def runtime(self) -> Runtime:
        assert self._runtime is not None, "bind() the relay to its runtime first"
        return self._runtime

    def push(self, message: dict[str, Any]) -> None:
        """Have every instance send `message` to its clients listening to its order/customer
        (queued: `run` publishes it)."""
        if self.runtime.settings.activity and not self.clients.listened_to():
            self.unheard += 1
            return
        push = NotificationPushed(
            order_id=message.get("order_id"),
            customer_id=message.get("customer_id"),
            handled_by=self.runtime.instance,
            message=message,
        )
        event = CloudEvent.of(
            push,
            type=NOTIFICATION_PUSHED,
            source=f"/services/notification/{self.runtime.instance}",
            subject=push.order_id,
            dataschema=NOTIFICATION_PUSHED_SCHEMA,
        )
        if len(self._queued) == QUEUED_MAX:
            self.dropped += 1
        self._queued.append(event)
        self._wake.set()

    async def run(self, runtime: Runtime) -> None:
        """A background task: publish what is queued until shutdown (what is left then is
        dropped: a view of the moment)."""
        while not runtime.stopping.is_set():
            await self._wake.wait()
            self._wake.clear()
            while self._queued and not runtime.stopping.is_set():
                batch = [self._queued.popleft() for _ in range(min(BATCH, len(self._queued)))]
                outcomes = await runtime.bus.publish_many([(NOTIFICATION_PUSHED, e) for e in batch])
                refused = [error for error in outcomes if error is not None]
                if refused:  # best effort: the notifications are stored already
                    self.dropped += len(refused)
                    log.warning(
                        "%d live pushes not published (%s)", len(refused), type(refused[0]).__name__
                    )

    async def forward(self, event: CloudEvent) -> None:
        push = NotificationPushed.model_validate(event.data)
        keys = set()
        if push.order_id:
            keys.add(f"order:{push.order_id}")
        if push.customer_id:
            keys.add(f"customer:{push.customer_id}")
        message = push.message | {
            "handled_by": push.handled_by,
            "delivered_by": self.runtime.instance,
        }
        await self.clients.deliver("notifications", keys, message)
