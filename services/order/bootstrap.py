"""The order service, wired: `POST /orders` takes orders (group commit, rate limit), the
answers of inventory and billing decide them, and an order left without a decision is rejected
after the timeout.

The one place the service is put together (cosmicpython's `bootstrap.py`): its routes,
subscriptions, background work and hooks, and the objects they share."""

from __future__ import annotations

import functools

from contracts import (
    INVENTORY_REJECTED,
    INVENTORY_RESERVED,
    INVOICE_ISSUED,
    InventoryRejected,
    InventoryReserved,
    InvoiceIssued,
    published_by,
)
from services.order import timeouts
from services.order.handlers import record_answers
from services.order.ratelimit import OrderRateLimit
from services.order.routes import routes
from services.order.settings import OrderSettings
from services.order.store import metadata, outbox, seed_catalogue
from services.order.writer import OrderWriter
from services.runtime.service import ServiceSpec, Subscription


def spec(own: OrderSettings | None = None) -> ServiceSpec:
    """`own`: the service's settings (tests pass theirs); read from the environment when None."""
    if own is None:
        own = OrderSettings()
    rate_limit = OrderRateLimit(own)
    writer = OrderWriter()
    return ServiceSpec(
        name="order",
        own=own,
        metadata=metadata,
        routes=lambda runtime: routes(runtime, own, rate_limit.build(runtime.settings), writer),
        subscriptions=[  # the answers it awaits
            Subscription(INVENTORY_RESERVED, InventoryReserved, batched=record_answers),
            Subscription(INVENTORY_REJECTED, InventoryRejected, batched=record_answers),
            Subscription(INVOICE_ISSUED, InvoiceIssued, batched=record_answers),
        ],
        seed=seed_catalogue,
        outbox=outbox,
        background=[writer.run, functools.partial(timeouts.run, timeout_s=own.decision_timeout_s)],
        on_stop=[rate_limit.close],
        publishes=published_by("order"),
    )
