"""`order_confirmed` and `order_rejected` v1: the order service's verdict, once per order.

Both carry what billing and notification need without asking the order service: who the
customer is and what the order was worth (billing voids, or first records, the invoice from it).
"""

from __future__ import annotations

from pydantic import AwareDatetime

from contracts.base import Currency, CustomerId, Money, OrderEventData, Reason

ORDER_CONFIRMED = "order_confirmed"
ORDER_REJECTED = "order_rejected"


class OrderConfirmed(OrderEventData):
    """Version 1: stock is reserved and the invoice issued."""

    customer_id: CustomerId
    total: Money
    currency: Currency
    confirmed_at: AwareDatetime


class OrderRejected(OrderEventData):
    """Version 1: the order will not be fulfilled; whatever was done for it is to be undone."""

    customer_id: CustomerId
    total: Money
    currency: Currency
    reason: Reason
    rejected_at: AwareDatetime
