"""Issue the invoice of an order; void it if the order is rejected (the saga's compensation).

The two events may arrive in either order: an `order_rejected` that overtakes `order_created`
(billing was behind) issues the invoice from the rejection's data and voids it at once, and
the late `order_created` then finds the invoice and does nothing. Either way each order has
one invoice, and a rejected order's invoice is voided. Two replicas handling both events of
one order at once collide on the invoice's primary key; the loser's event is retried.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bus.port import Received
from contracts import (
    INVOICE_ISSUED,
    INVOICE_VOIDED,
    CloudEvent,
    InvoiceIssued,
    InvoiceVoided,
    OrderCreated,
    OrderRejected,
    wrap,
)
from services.billing.store import invoices, outbox, voids
from services.runtime.outbox import enqueue

log = logging.getLogger(__name__)


# Built once, with bound parameters (see services/inventory/handlers.py).
_INVOICE_ID = select(invoices.c.invoice_id).where(invoices.c.order_id == bindparam("b_order"))
_ADD_INVOICE = insert(invoices)
_VOIDED = select(voids.c.order_id).where(voids.c.order_id == bindparam("b_order"))
_ADD_VOID = insert(voids)


async def issue_invoice(conn: AsyncConnection, order: OrderCreated, cause: Received) -> None:
    if await _invoice_id(conn, str(order.order_id)) is not None:
        log.info("order %s: invoiced already (its rejection came first)", order.order_id)
        return
    await _issue(conn, order.order_id, order.customer_id, order.total, order.currency, cause)


async def void_invoice(conn: AsyncConnection, rejected: OrderRejected, cause: Received) -> None:
    order_id = str(rejected.order_id)
    invoice_id = await _invoice_id(conn, order_id)
    if invoice_id is None:
        invoice_id = await _issue(
            conn, rejected.order_id, rejected.customer_id, rejected.total, rejected.currency, cause
        )
    already = await conn.execute(_VOIDED, {"b_order": order_id})
    if already.first() is not None:
        return
    voided = InvoiceVoided(
        order_id=rejected.order_id,
        invoice_id=invoice_id,
        reason=f"order rejected: {rejected.reason}"[:200],
        voided_at=datetime.now(UTC),
    )
    await conn.execute(
        _ADD_VOID,
        {
            "order_id": order_id,
            "invoice_id": str(invoice_id),
            "reason": voided.reason,
            "instance_id": cause.delivery.consumer,
            "voided_at": voided.voided_at,
        },
    )
    await _announce(conn, INVOICE_VOIDED, voided, cause.event)
    log.info("order %s: invoice %s voided", order_id, invoice_id)


async def _issue(
    conn: AsyncConnection,
    order_id: uuid.UUID,
    customer_id: str,
    total: Decimal,
    currency: str,
    cause: Received,
) -> uuid.UUID:
    issued = InvoiceIssued(
        order_id=order_id,
        invoice_id=uuid.uuid4(),
        customer_id=customer_id,
        total=total,
        currency=currency,
        issued_at=datetime.now(UTC),
    )
    await conn.execute(
        _ADD_INVOICE,
        {
            "order_id": str(order_id),
            "invoice_id": str(issued.invoice_id),
            "customer_id": customer_id,
            "total": str(total),
            "currency": currency,
            "instance_id": cause.delivery.consumer,
            "issued_at": issued.issued_at,
        },
    )
    await _announce(conn, INVOICE_ISSUED, issued, cause.event)
    return issued.invoice_id


async def _announce(
    conn: AsyncConnection, topic: str, payload: InvoiceIssued | InvoiceVoided, cause: CloudEvent
) -> None:
    event = wrap(topic, payload, correlationid=cause.correlationid)
    await enqueue(conn, outbox, topic, event)


async def _invoice_id(conn: AsyncConnection, order_id: str) -> uuid.UUID | None:
    found = (await conn.execute(_INVOICE_ID, {"b_order": order_id})).scalar()
    return uuid.UUID(found) if found is not None else None
