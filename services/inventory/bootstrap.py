"""Inventory, wired: it reserves stock for every order, every line or none, and gives it back
when the order is rejected; its catalogue's stock is seeded at start.

The one place the service is put together (cosmicpython's `bootstrap.py`): its routes,
subscriptions, background work and hooks, and the objects they share."""

from __future__ import annotations

from contracts import ORDER_CREATED, ORDER_REJECTED, OrderCreated, OrderRejected, published_by
from services.inventory.handlers import release, reserve
from services.inventory.routes import routes
from services.inventory.settings import InventorySettings
from services.inventory.store import metadata, outbox, seed_stock
from services.runtime.service import ServiceSpec, Subscription


def spec(own: InventorySettings | None = None) -> ServiceSpec:
    """`own`: the service's settings (tests pass theirs); read from the environment when None."""
    return ServiceSpec(
        name="inventory",
        own=InventorySettings() if own is None else own,
        metadata=metadata,
        routes=routes,
        subscriptions=[
            Subscription(ORDER_CREATED, OrderCreated, batched=reserve),
            Subscription(ORDER_REJECTED, OrderRejected, batched=release),
        ],
        seed=seed_stock,
        outbox=outbox,
        publishes=published_by("inventory"),
    )
