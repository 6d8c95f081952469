"""`order_created` v1: published by the order service once an order is accepted."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.base import Currency, CustomerId, Money, OrderEventData, Sku

ORDER_CREATED = "order_created"


class OrderItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: Sku
    quantity: Annotated[int, Field(ge=1, le=1000)]
    unit_price: Money


class OrderCreated(OrderEventData):
    """Version 1. Adding an optional field keeps v1; any other change is a new version."""

    customer_id: CustomerId
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=100)]
    total: Money
    currency: Currency
    created_at: AwareDatetime
