"""Hear inventory's and billing's answers about an order; confirm or reject it once they say so.

Each answer is recorded as a fact (once, whichever event id brings it); the order's status is
then derived from all its facts (`services.order.lifecycle`), so duplicates and any arrival
order give the same result. A change of status is written with its cause to the order's
history and announced (`order_confirmed` / `order_rejected`) through the outbox, all in the
inbox's transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bus.codec import PoisonMessage
from bus.port import Received
from contracts import (
    ORDER_CONFIRMED,
    ORDER_REJECTED,
    OrderConfirmed,
    OrderRejected,
    wrap,
)
from services.order.lifecycle import Answer, Fact, fact_of, next_status, rejection_reason
from services.order.store import order_facts, order_history, orders, outbox
from services.runtime.outbox import enqueue

log = logging.getLogger(__name__)


# Built once, with bound parameters (see services/inventory/handlers.py).
# Lock the order row first: two replicas recording the two answers of one order at once
# would otherwise each miss the other's fact and neither would confirm (PostgreSQL; SQLite
# serialises writers anyway and ignores FOR UPDATE).
_ORDER_FOR_UPDATE = (
    select(orders).where(orders.c.order_id == bindparam("b_order")).with_for_update()
)
_FACTS = select(order_facts.c.fact, order_facts.c.detail).where(
    order_facts.c.order_id == bindparam("b_order")
)
_ADD_FACT = insert(order_facts)
_SET_STATUS = (
    update(orders)
    .where(orders.c.order_id == bindparam("b_order"))
    .values(status=bindparam("b_status"))
)
_ADD_STEP = insert(order_history)


class UnknownOrder(PoisonMessage):
    """An answer about an order this service never took: dead-lettered at once. It cannot be
    early (an order is committed before its `order_created` leaves through the outbox), so
    no retry would find the order."""


@dataclass(frozen=True)
class Cause:
    """What established a fact: an answer event, or the order service's own timeout."""

    event_id: str
    event_type: str
    correlationid: str | None


async def record_answer(conn: AsyncConnection, answer: Answer, received: Received) -> None:
    fact, detail = fact_of(answer)
    order_id = str(answer.order_id)
    event = received.event
    order = await lock_order(conn, order_id)
    if order is None:
        raise UnknownOrder(f"{event.type} {event.id} is about order {order_id}, unknown here")
    cause = Cause(str(event.id), event.type, event.correlationid)
    await establish(conn, order, fact, detail, cause)


async def lock_order(conn: AsyncConnection, order_id: str) -> dict[str, Any] | None:
    """The order's row, locked until the transaction ends (PostgreSQL), or None if unknown."""
    order = (await conn.execute(_ORDER_FOR_UPDATE, {"b_order": order_id})).mappings().first()
    return dict(order) if order is not None else None


async def establish(
    conn: AsyncConnection, order: dict[str, Any], fact: Fact, detail: str | None, cause: Cause
) -> str | None:
    """Record `fact` about `order` (its row locked by the caller, in this transaction) once,
    then move the order to the status its facts now give, with history and announcement.
    Returns the new status, or None if it stays."""
    order_id = order["order_id"]
    facts = await _facts(conn, order_id)
    if fact not in facts:
        await conn.execute(
            _ADD_FACT,
            {
                "order_id": order_id,
                "fact": fact,
                "event_id": cause.event_id,
                "event_type": cause.event_type,
                "detail": detail,
                "recorded_at": datetime.now(UTC),
            },
        )
        facts[fact] = detail
    status = next_status(order["status"], facts.keys())
    if status is None:
        return None
    reason = rejection_reason(facts) if status == "rejected" else None
    now = datetime.now(UTC)
    await conn.execute(_SET_STATUS, {"b_order": order_id, "b_status": status})
    await conn.execute(
        _ADD_STEP,
        {
            "order_id": order_id,
            "status": status,
            "event_id": cause.event_id,
            "event_type": cause.event_type,
            "reason": reason,
            "at": now,
        },
    )
    await _announce(conn, order, status, reason, now, cause.correlationid)
    log.info("order %s %s by %s %s", order_id, status, cause.event_type, cause.event_id)
    return status


async def _facts(conn: AsyncConnection, order_id: str) -> dict[Fact, str | None]:
    rows = await conn.execute(_FACTS, {"b_order": order_id})
    return {Fact(fact): detail for fact, detail in rows}


async def _announce(
    conn: AsyncConnection,
    order: dict[str, Any],
    status: str,
    reason: str | None,
    at: datetime,
    correlationid: str | None,
) -> None:
    common: dict[str, Any] = {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "total": Decimal(order["total"]),
        "currency": order["currency"],
    }
    if status == "confirmed":
        topic = ORDER_CONFIRMED
        payload: OrderConfirmed | OrderRejected = OrderConfirmed(**common, confirmed_at=at)
    else:
        topic = ORDER_REJECTED
        payload = OrderRejected(**common, reason=reason or "rejected", rejected_at=at)
    event = wrap(topic, payload, correlationid=correlationid)
    await enqueue(conn, outbox, topic, event)
