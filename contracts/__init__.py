"""Event and API contracts shared by every service: the one source of truth for their shape.

Services import `contracts` and `bus`, never each other. `contracts.events.EVENTS` lists every
business event type (= topic) of an order's life, `contracts.live` the events instances share
for the live views; each one's JSON Schema is exported to `contracts/schemas/`
(`python -m contracts.export`) and a unit test keeps those files in sync.
"""

from contracts.envelope import CloudEvent
from contracts.events import EVENTS, TOPICS, admission_error, published_by, wrap
from contracts.inventory_outcome import (
    INVENTORY_REJECTED,
    INVENTORY_RESERVED,
    InventoryRejected,
    InventoryReserved,
    ReservedLine,
)
from contracts.invoice import INVOICE_ISSUED, INVOICE_VOIDED, InvoiceIssued, InvoiceVoided
from contracts.live import (
    INSTANCE_ACTIVITY,
    NOTIFICATION_PUSHED,
    HandledEvent,
    InstanceActivity,
    NotificationPushed,
)
from contracts.order_created import ORDER_CREATED, OrderCreated, OrderItem
from contracts.order_outcome import ORDER_CONFIRMED, ORDER_REJECTED, OrderConfirmed, OrderRejected

__all__ = [
    "EVENTS",
    "INSTANCE_ACTIVITY",
    "INVENTORY_REJECTED",
    "INVENTORY_RESERVED",
    "INVOICE_ISSUED",
    "INVOICE_VOIDED",
    "NOTIFICATION_PUSHED",
    "ORDER_CONFIRMED",
    "ORDER_CREATED",
    "ORDER_REJECTED",
    "TOPICS",
    "CloudEvent",
    "HandledEvent",
    "InstanceActivity",
    "InventoryRejected",
    "InventoryReserved",
    "InvoiceIssued",
    "InvoiceVoided",
    "NotificationPushed",
    "OrderConfirmed",
    "OrderCreated",
    "OrderItem",
    "OrderRejected",
    "ReservedLine",
    "admission_error",
    "published_by",
    "wrap",
]
