"""Record each notification of an order (it was received; then its outcome) with its email to
send; after commit, send it (`services.notification.mail`) and push it live."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bus import Delivery
from contracts import (
    ORDER_CONFIRMED,
    ORDER_CREATED,
    CloudEvent,
    OrderConfirmed,
    OrderCreated,
    OrderRejected,
)
from services.notification import mail
from services.notification.relay import LiveRelay
from services.notification.store import notifications

_ADD_NOTIFICATION = insert(notifications)
"""Built once (see services/inventory/handlers.py)."""


@dataclass(frozen=True)
class Notice:
    order_id: str
    customer_id: str
    kind: str
    message: str


def message_for(order: OrderCreated) -> str:
    lines = sum(item.quantity for item in order.items)
    return f"Thank you! Order {order.order_id}: {lines} item(s), {order.total} {order.currency}."


def notice_of(event: CloudEvent) -> Notice:
    """What to tell the customer about `event`: `order_created`, `order_confirmed` or
    `order_rejected`."""
    if event.type == ORDER_CREATED:
        order = OrderCreated.model_validate(event.data)
        return Notice(str(order.order_id), order.customer_id, "received", message_for(order))
    if event.type == ORDER_CONFIRMED:
        done = OrderConfirmed.model_validate(event.data)
        text = f"Order {done.order_id} is confirmed: {done.total} {done.currency}."
        return Notice(str(done.order_id), done.customer_id, "confirmed", text)
    no = OrderRejected.model_validate(event.data)
    text = f"Sorry, order {no.order_id} cannot be fulfilled ({no.reason}); nothing is charged."
    return Notice(str(no.order_id), no.customer_id, "rejected", text)


async def record_notification(conn: AsyncConnection, event: CloudEvent, delivery: Delivery) -> None:
    notice = notice_of(event)
    await conn.execute(
        _ADD_NOTIFICATION,
        {
            "order_id": notice.order_id,
            "kind": notice.kind,
            "customer_id": notice.customer_id,
            "channel": "email",
            "message": notice.message,
            "instance_id": delivery.consumer,
            "created_at": datetime.now(UTC),
        },
    )
    await mail.queue(conn, notice, delivery.consumer)


def send_and_push(
    mailer: mail.Mailer, live: LiveRelay
) -> Callable[[Sequence[CloudEvent]], Awaitable[None]]:
    async def after_commit(events: Sequence[CloudEvent]) -> None:
        notices = [notice_of(event) for event in events]
        await mailer.deliver(notices)
        for notice in notices:
            live.push(
                {
                    "type": "notification",
                    "kind": notice.kind,
                    "order_id": notice.order_id,
                    "customer_id": notice.customer_id,
                    "message": notice.message,
                }
            )

    return after_commit
