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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

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
from contracts.ids import new_id
from services.billing.store import invoices, outbox, voids
from services.runtime.inbox import traceparent_of
from services.runtime.outbox import enqueue_many

log = logging.getLogger(__name__)


# Built once, with bound parameters (see services/inventory/handlers.py).
_INVOICE_IDS = select(invoices.c.order_id, invoices.c.invoice_id).where(
    invoices.c.order_id.in_(bindparam("b_orders", expanding=True))
)
_ADD_INVOICE = insert(invoices)
_VOIDED = select(voids.c.order_id).where(
    voids.c.order_id.in_(bindparam("b_orders", expanding=True))
)
_ADD_VOID = insert(voids)


async def issue_invoices(
    conn: AsyncConnection, batch: Sequence[tuple[OrderCreated, Received]]
) -> None:
    """A batch's invoices: which orders have one already read in one statement, the new
    invoices and their announcements written in one statement each."""
    order_ids = sorted({str(order.order_id) for order, _ in batch})
    invoiced = set((await conn.execute(_INVOICE_IDS, {"b_orders": order_ids})).scalars())
    writes = _Writes()
    for order, cause in batch:
        order_id = str(order.order_id)
        if order_id in invoiced:
            # Its rejection came first (and issued it), or the order came twice in this batch.
            log.debug("order %s: invoiced already", order_id)
            continue
        invoiced.add(order_id)
        _issue(writes, order.order_id, order.customer_id, order.total, order.currency, cause)
    await writes.apply(conn)


async def void_invoices(
    conn: AsyncConnection, batch: Sequence[tuple[OrderRejected, Received]]
) -> None:
    """A batch of rejections, each order's invoice voided once: which orders have an invoice
    and which a void read in one statement each, then the invoices issued from a rejection
    that overtook its `order_created`, the voids and the announcements written in one
    statement each."""
    order_ids = sorted({str(rejected.order_id) for rejected, _ in batch})
    invoice_ids = {
        order_id: uuid.UUID(invoice_id)
        for order_id, invoice_id in await conn.execute(_INVOICE_IDS, {"b_orders": order_ids})
    }
    voided = set((await conn.execute(_VOIDED, {"b_orders": order_ids})).scalars())
    writes = _Writes()
    for rejected, cause in batch:
        order_id = str(rejected.order_id)
        if order_id in voided:
            continue  # voided already, or the rejection came twice in this batch
        invoice_id = invoice_ids.get(order_id)
        if invoice_id is None:
            invoice_id = _issue(
                writes,
                rejected.order_id,
                rejected.customer_id,
                rejected.total,
                rejected.currency,
                cause,
            )
        voided.add(order_id)
        _void(writes, rejected, invoice_id, cause)
    await writes.apply(conn)
    if writes.voids:
        log.info("invoices voided: %d", len(writes.voids))


@dataclass
class _Writes:
    """Invoices and voids to add and their announcements, written a statement each."""

    invoices: list[dict[str, Any]] = field(default_factory=list)
    voids: list[dict[str, Any]] = field(default_factory=list)
    announcements: list[tuple[str, CloudEvent]] = field(default_factory=list)

    async def apply(self, conn: AsyncConnection) -> None:
        # Rows in the order of their keys: two replicas' batches inserting the same new
        # invoices (an order and its rejection, handled at once) never take them in opposite
        # orders, so they cannot wait on each other in a cycle.
        if self.invoices:
            await conn.execute(_ADD_INVOICE, sorted(self.invoices, key=itemgetter("order_id")))
        if self.voids:
            await conn.execute(_ADD_VOID, sorted(self.voids, key=itemgetter("order_id")))
        if self.announcements:
            await enqueue_many(conn, outbox, self.announcements)


def _issue(
    writes: _Writes,
    order_id: uuid.UUID,
    customer_id: str,
    total: Decimal,
    currency: str,
    cause: Received,
) -> uuid.UUID:
    issued = InvoiceIssued(
        order_id=order_id,
        invoice_id=new_id(),
        customer_id=customer_id,
        total=total,
        currency=currency,
        issued_at=datetime.now(UTC),
    )
    writes.invoices.append(
        {
            "order_id": str(order_id),
            "invoice_id": str(issued.invoice_id),
            "customer_id": customer_id,
            "total": str(total),
            "currency": currency,
            "instance_id": cause.delivery.consumer,
            "issued_at": issued.issued_at,
        }
    )
    writes.announcements.append((INVOICE_ISSUED, _announcement(INVOICE_ISSUED, issued, cause)))
    return issued.invoice_id


def _void(writes: _Writes, rejected: OrderRejected, invoice_id: uuid.UUID, cause: Received) -> None:
    voided = InvoiceVoided(
        order_id=rejected.order_id,
        invoice_id=invoice_id,
        reason=f"order rejected: {rejected.reason}"[:200],
        voided_at=datetime.now(UTC),
    )
    writes.voids.append(
        {
            "order_id": str(rejected.order_id),
            "invoice_id": str(invoice_id),
            "reason": voided.reason,
            "instance_id": cause.delivery.consumer,
            "voided_at": voided.voided_at,
        }
    )
    writes.announcements.append((INVOICE_VOIDED, _announcement(INVOICE_VOIDED, voided, cause)))
    log.debug("order %s: invoice %s voided", rejected.order_id, invoice_id)


def _announcement(
    topic: str, payload: InvoiceIssued | InvoiceVoided, cause: Received
) -> CloudEvent:
    """`payload` as an event of `topic`, in its cause's correlation and trace (a batch is
    handled in one call, outside each event's span: `traceparent_of`)."""
    event = wrap(topic, payload, correlationid=cause.event.correlationid)
    if (trace := traceparent_of(cause)) is not None:
        event = event.model_copy(update={"traceparent": trace})
    return event
