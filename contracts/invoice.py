"""`invoice_issued` and `invoice_voided` v1: billing's invoice of an order, and its undoing.

Every order gets one invoice; a rejected order's invoice is voided (the saga's compensation).
"""

from __future__ import annotations

import uuid

from pydantic import AwareDatetime

from contracts.base import Currency, CustomerId, Money, OrderEventData, Reason

INVOICE_ISSUED = "invoice_issued"
INVOICE_VOIDED = "invoice_voided"


class InvoiceIssued(OrderEventData):
    """Version 1."""

    invoice_id: uuid.UUID
    customer_id: CustomerId
    total: Money
    currency: Currency
    issued_at: AwareDatetime


class InvoiceVoided(OrderEventData):
    """Version 1: the invoice no longer stands; the customer owes nothing for the order."""

    invoice_id: uuid.UUID
    reason: Reason
    voided_at: AwareDatetime
