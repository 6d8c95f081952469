"""Record the notification of an order; after commit, send it and push it live."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bus import Delivery
from contracts import CloudEvent, OrderCreated
from services.notification.relay import LiveRelay
from services.notification.store import notifications

email = logging.getLogger("notification.email")
"""The "email" sink: a log line per message, where a real system would call its mail API."""


def message_for(order: OrderCreated) -> str:
    lines = sum(item.quantity for item in order.items)
    return f"Thank you! Order {order.order_id}: {lines} item(s), {order.total} {order.currency}."


async def record_notification(conn: AsyncConnection, event: CloudEvent, delivery: Delivery) -> None:
    order = OrderCreated.model_validate(event.data)
    await conn.execute(
        insert(notifications).values(
            order_id=str(order.order_id),
            customer_id=order.customer_id,
            channel="email",
            message=message_for(order),
            instance_id=delivery.consumer,
            created_at=datetime.now(UTC),
        )
    )


def send_and_push(live: LiveRelay) -> Callable[[CloudEvent], Awaitable[None]]:
    async def after_commit(event: CloudEvent) -> None:
        order = OrderCreated.model_validate(event.data)
        text = message_for(order)
        email.info("to customer %s: %s", order.customer_id, text)
        await live.push(
            {
                "type": "notification",
                "order_id": str(order.order_id),
                "customer_id": order.customer_id,
                "message": text,
            }
        )

    return after_commit
