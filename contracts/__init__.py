"""Event and API contracts shared by every service: the one source of truth for their shape.

Services import `contracts` and `bus`, never each other. Each event's JSON Schema is exported to
`contracts/schemas/` (`python -m contracts.export`) and a unit test keeps those files in sync.
"""

from contracts.envelope import CloudEvent
from contracts.live import (
    INSTANCE_ACTIVITY,
    NOTIFICATION_PUSHED,
    HandledEvent,
    InstanceActivity,
    NotificationPushed,
)
from contracts.order_created import ORDER_CREATED, OrderCreated, OrderItem

__all__ = [
    "INSTANCE_ACTIVITY",
    "NOTIFICATION_PUSHED",
    "ORDER_CREATED",
    "CloudEvent",
    "HandledEvent",
    "InstanceActivity",
    "NotificationPushed",
    "OrderCreated",
    "OrderItem",
]
