"""HTTP request and response models of the services' public API."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.base import CustomerId, Sku

OrderStatus = Literal["pending", "confirmed", "rejected"]
"""`pending` until inventory and billing have answered; then `confirmed` (stock reserved and
invoice issued) or `rejected` (stock short), for good. See docs/saga.md."""


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    quantity: Annotated[int, Field(ge=1, le=1000)]


class PlaceOrder(BaseModel):
    """`POST /orders`. Unknown fields are refused, so a typo is an error and not ignored."""

    model_config = ConfigDict(extra="forbid")

    customer_id: CustomerId
    items: Annotated[list[OrderLine], Field(min_length=1, max_length=100)]


class OrderAccepted(BaseModel):
    """`202` to `POST /orders`, and again to a replay of it (the same `Idempotency-Key`):
    accepted, not yet decided. The outcome is on `GET /orders/{order_id}`."""

    order_id: uuid.UUID
    status: Literal["pending"]


class PricedLine(BaseModel):
    sku: str
    quantity: int
    unit_price: Decimal


class OrderTransition(BaseModel):
    """One step of an order's status, and the event that caused it."""

    status: OrderStatus
    event_id: uuid.UUID
    event_type: str
    reason: str | None = None
    """Why, for a rejection."""
    at: datetime
    """When the order service recorded it."""


class OrderView(BaseModel):
    order_id: uuid.UUID
    customer_id: str
    status: OrderStatus
    items: list[PricedLine]
    total: Decimal
    currency: str
    created_at: datetime
    history: list[OrderTransition]
    """Oldest first: `pending` (caused by the order's own `order_created`), then the outcome."""


class OrderPage(BaseModel):
    orders: list[OrderView]
    limit: int
    offset: int
    total: int


class ProductView(BaseModel):
    sku: str
    name: str
    unit_price: Decimal
