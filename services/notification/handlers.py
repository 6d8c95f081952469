"""Record each notification of an order (it was received; then its outcome) with its email to
send, a batch at a time; after commit, send them (`services.notification.mail`) and push them
live."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bus.port import Received
from contracts import (
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


News = OrderCreated | OrderConfirmed | OrderRejected
"""What the customer is told about: the notification service's subscriptions."""


def notice_of(news: News) -> Notice:
    """What to tell the customer about `news`."""
    if isinstance(news, OrderCreated):
        return Notice(str(news.order_id), news.customer_id, "received", message_for(news))
    if isinstance(news, OrderConfirmed):
        text = f"Order {news.order_id} is confirmed: {news.total} {news.currency}."
        return Notice(str(news.order_id), news.customer_id, "confirmed", text)
    text = f"Sorry, order {news.order_id} cannot be fulfilled ({news.reason}); nothing is charged."
    return Notice(str(news.order_id), news.customer_id, "rejected", text)


async def record_notifications(
    conn: AsyncConnection, batch: Sequence[tuple[News, Received]]
) -> None:
    """A batch's notifications and their emails, two statements for the whole batch (a
    subscription's consumer handles it: one instance for all of them)."""
    notices = [notice_of(news) for news, _ in batch]
    consumer = batch[0][1].delivery.consumer
    now = datetime.now(UTC)
    await conn.execute(
        _ADD_NOTIFICATION,
        [
            {
                "order_id": notice.order_id,
                "kind": notice.kind,
                "customer_id": notice.customer_id,
                "channel": "email",
                "message": notice.message,
                "instance_id": consumer,
                "created_at": now,
            }
            for notice in notices
        ],
    )
    await mail.queue(conn, notices, consumer)


def send_and_push(
    mailer: mail.Mailer, live: LiveRelay
) -> Callable[[Sequence[News]], Awaitable[None]]:
    async def after_commit(news: Sequence[News]) -> None:
        notices = [notice_of(one) for one in news]
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
