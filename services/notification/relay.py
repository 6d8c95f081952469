"""Pushes that reach every notification instance's browsers, relayed through the broker.

`push` publishes one `notification_pushed` event; every instance receives it (a group per
instance) and `forward`s it to its own clients that listen to that order or customer. A push
is a live view, best effort: the notification itself is already in the database (and in
`GET /notifications`), so a push the broker refuses is logged, not retried.
"""

from __future__ import annotations

import logging
from typing import Any

from contracts import NOTIFICATION_PUSHED, CloudEvent, NotificationPushed
from contracts.live import NOTIFICATION_PUSHED_SCHEMA
from services.notification.live import LiveClients
from services.runtime.app import Runtime

log = logging.getLogger(__name__)


class LiveRelay:
    def __init__(self, clients: LiveClients) -> None:
        self.clients = clients
        self._runtime: Runtime | None = None

    def bind(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @property
    def runtime(self) -> Runtime:
        assert self._runtime is not None, "bind() the relay to its runtime first"
        return self._runtime

    async def push(self, message: dict[str, Any]) -> None:
        """Have every instance send `message` to its clients listening to its order/customer."""
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
        try:
            await self.runtime.bus.publish(NOTIFICATION_PUSHED, event)
        except Exception:  # best effort: the notification is stored already
            log.warning("live push for order %s not published", push.order_id, exc_info=True)

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
