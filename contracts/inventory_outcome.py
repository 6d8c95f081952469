"""`inventory_reserved` and `inventory_rejected` v1: inventory's answer to an `order_created`.

Exactly one of the two per order: stock is reserved for every line, or for none.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.base import OrderEventData, Reason, Sku

INVENTORY_RESERVED = "inventory_reserved"
INVENTORY_REJECTED = "inventory_rejected"


class ReservedLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: Sku
    quantity: Annotated[int, Field(ge=1, le=1000)]


class InventoryReserved(OrderEventData):
    """Version 1: stock is held for every line of the order."""

    items: Annotated[list[ReservedLine], Field(min_length=1, max_length=100)]
    reserved_at: AwareDatetime


class InventoryRejected(OrderEventData):
    """Version 1: stock is short for at least one line; nothing is held for the order."""

    reason: Reason
    rejected_at: AwareDatetime
