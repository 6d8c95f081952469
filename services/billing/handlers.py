"""Issue the invoice of an order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bus import Delivery
from contracts import CloudEvent, OrderCreated
from services.billing.store import invoices


async def issue_invoice(conn: AsyncConnection, event: CloudEvent, delivery: Delivery) -> None:
    order = OrderCreated.model_validate(event.data)
    await conn.execute(
        insert(invoices).values(
            order_id=str(order.order_id),
            invoice_id=str(uuid.uuid4()),
            customer_id=order.customer_id,
            total=str(order.total),
            currency=order.currency,
            instance_id=delivery.consumer,
            issued_at=datetime.now(UTC),
        )
    )
