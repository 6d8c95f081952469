"""`order_created` v1: published by the order service once an order is accepted."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

ORDER_CREATED = "order_created"
ORDER_CREATED_SCHEMA = "urn:orderbus:schema:order_created:1"

Sku = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")]
CustomerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]


class OrderItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: Sku
    quantity: Annotated[int, Field(ge=1, le=1000)]
    unit_price: Money


class OrderCreated(BaseModel):
    """Version 1. Adding an optional field keeps v1; any other change is a new version."""

    model_config = ConfigDict(frozen=True)

    order_id: uuid.UUID
    customer_id: CustomerId
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=100)]
    total: Money
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    created_at: AwareDatetime
