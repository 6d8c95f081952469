"""Billing, wired: it issues an invoice for every order and voids it when the order is rejected
(the saga's compensation); `GET /invoices/{order_id}` shows it.

The one place the service is put together (cosmicpython's `bootstrap.py`): its routes,
subscriptions, background work and hooks, and the objects they share."""

from __future__ import annotations

from contracts import ORDER_CREATED, ORDER_REJECTED, OrderCreated, OrderRejected, published_by
from services.billing.handlers import issue_invoices, void_invoices
from services.billing.routes import routes
from services.billing.settings import BillingSettings
from services.billing.store import metadata, outbox
from services.runtime.service import ServiceSpec, Subscription


def spec(own: BillingSettings | None = None) -> ServiceSpec:
    """`own`: the service's settings (tests pass theirs); read from the environment when None."""
    return ServiceSpec(
        name="billing",
        own=BillingSettings() if own is None else own,
        metadata=metadata,
        routes=routes,
        subscriptions=[
            Subscription(ORDER_CREATED, OrderCreated, batched=issue_invoices),
            Subscription(ORDER_REJECTED, OrderRejected, batched=void_invoices),
        ],
        outbox=outbox,
        publishes=published_by("billing"),
    )
