"""Notification, wired: it records and emails what the customer is told of an order and pushes
it live over `/ws`; it also serves the operator console (`services.console`), whose feed rides
the same gateway.

The one place the service is put together (cosmicpython's `bootstrap.py`): its routes,
subscriptions, background work and hooks, and the objects they share."""

from __future__ import annotations

from contracts import (
    INSTANCE_ACTIVITY,
    NOTIFICATION_PUSHED,
    ORDER_CONFIRMED,
    ORDER_CREATED,
    ORDER_REJECTED,
    OrderConfirmed,
    OrderCreated,
    OrderRejected,
)
from services.console.dashboard import Dashboard
from services.notification.handlers import record_notifications, send_and_push
from services.notification.live import LiveClients
from services.notification.mail import Mailer
from services.notification.relay import LiveRelay
from services.notification.routes import routes
from services.notification.settings import NotificationSettings
from services.notification.store import metadata
from services.runtime.service import Broadcast, ServiceSpec, Subscription


def spec(own: NotificationSettings | None = None) -> ServiceSpec:
    """`own`: the service's settings (tests pass theirs); read from the environment when None."""
    if own is None:
        own = NotificationSettings()
    relay = LiveRelay(LiveClients())
    dashboard = Dashboard(relay.clients)
    mailer = Mailer()
    sent = send_and_push(mailer, relay)
    return ServiceSpec(
        name="notification",
        own=own,
        metadata=metadata,
        routes=lambda runtime: routes(runtime, own, relay, dashboard, mailer),
        subscriptions=[
            Subscription(
                ORDER_CREATED, OrderCreated, batched=record_notifications, after_commit=sent
            ),
            Subscription(
                ORDER_CONFIRMED, OrderConfirmed, batched=record_notifications, after_commit=sent
            ),
            Subscription(
                ORDER_REJECTED, OrderRejected, batched=record_notifications, after_commit=sent
            ),
        ],
        background=[dashboard.watch_backlog, dashboard.keep_recording, relay.run, mailer.run],
        broadcasts=[
            Broadcast(NOTIFICATION_PUSHED, relay.forward),
            Broadcast(INSTANCE_ACTIVITY, dashboard.on_activity, max_age_s=10),
        ],
    )
