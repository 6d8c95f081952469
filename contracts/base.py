"""What the events have in common: their data's base class and the field types they share."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Sku = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")]
CustomerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""Why something was refused or undone, for people: no service parses it."""


class OrderEventData(BaseModel):
    """Frozen, and about one order: its id is the event's `subject` and the Kafka key."""

    model_config = ConfigDict(frozen=True)

    order_id: uuid.UUID
