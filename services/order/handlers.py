"""Hear inventory's and billing's answers about an order; confirm or reject it once they say so.

Each answer is recorded as a fact (once, whichever event id brings it); the order's status is
then derived from all its facts (`services.order.lifecycle`), so duplicates and any arrival
order give the same result. A change of status is written with its cause to the order's
history and announced (`order_confirmed` / `order_rejected`) through the outbox, all in the
inbox's transaction.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    CloudEvent,
    OrderConfirmed,
    OrderRejected,
    wrap,
)
from services.order.lifecycle import Answer, Fact, fact_of, next_status, rejection_reason
from services.order.store import order_facts, order_history, orders, outbox
from services.runtime.inbox import traceparent_of
from services.runtime.outbox import enqueue_many

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
# A batch's orders, locked in the order of their ids: two replicas locking overlapping
# batches take the rows in the same order, so neither waits on the other in a cycle.
_ORDERS_FOR_UPDATE = (
    select(orders)
    .where(orders.c.order_id.in_(bindparam("b_orders", expanding=True)))
    .order_by(orders.c.order_id)
    .with_for_update()
)
_FACTS_OF = select(order_facts.c.order_id, order_facts.c.fact, order_facts.c.detail).where(
    order_facts.c.order_id.in_(bindparam("b_orders", expanding=True))
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
    traceparent: str | None = None
    """Its handling's trace, for the decision it brings (None: the span in progress's)."""


async def record_answers(conn: AsyncConnection, batch: Sequence[tuple[Answer, Received]]) -> None:
    """A batch of answers (of one topic) in a statement per kind of row: the orders locked and
    their facts read at once, then the new facts, statuses, history and announcements each
    written in one statement. An answer about an unknown order fails the batch before
    anything is written; handled again one at a time, only it goes to the dead letters."""
    order_ids = sorted({str(answer.order_id) for answer, _ in batch})
    found = await conn.execute(_ORDERS_FOR_UPDATE, {"b_orders": order_ids})
    known = {row["order_id"]: dict(row) for row in found.mappings()}
    for answer, received in batch:
        if str(answer.order_id) not in known:
            event = received.event
            raise UnknownOrder(
                f"{event.type} {event.id} is about order {answer.order_id}, unknown here"
            )
    facts: dict[str, dict[Fact, str | None]] = {order_id: {} for order_id in order_ids}
    for order_id, fact, detail in await conn.execute(_FACTS_OF, {"b_orders": order_ids}):
        facts[order_id][Fact(fact)] = detail
    writes = _Writes()
    now = datetime.now(UTC)
    for answer, received in batch:
        order_id = str(answer.order_id)
        fact, detail = fact_of(answer)
        event = received.event
        cause = Cause(str(event.id), event.type, event.correlationid, traceparent_of(received))
        _step(known[order_id], facts[order_id], fact, detail, cause, now, writes)
    await writes.apply(conn)
    if writes.statuses:
        _log_decided(writes, batch[0][1].event.type, len(batch))


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
    writes = _Writes()
    facts = await _facts(conn, order["order_id"])
    status = _step(order, facts, fact, detail, cause, datetime.now(UTC), writes)
    await writes.apply(conn)
    return status


def _log_decided(writes: _Writes, answer_type: str, answers: int) -> None:
    """One line for the orders a batch decided (each order's own line is DEBUG)."""
    by_status = Counter(s["b_status"] for s in writes.statuses)
    log.info(
        "orders decided: %d (%s); answers: %d %s",
        len(writes.statuses),
        ", ".join(f"{n} {status}" for status, n in sorted(by_status.items())),
        answers,
        answer_type,
        extra={"event_type": answer_type},
    )


@dataclass
class _Writes:
    """The rows that facts add and change (a batch of answers', or the timeout sweep's one),
    written a statement per kind."""

    facts: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    announcements: list[tuple[str, CloudEvent]] = field(default_factory=list)

    async def apply(self, conn: AsyncConnection) -> None:
        if self.facts:
            await conn.execute(_ADD_FACT, self.facts)
        if self.statuses:
            await conn.execute(_SET_STATUS, self.statuses)
        if self.steps:
            await conn.execute(_ADD_STEP, self.steps)
        if self.announcements:
            await enqueue_many(conn, outbox, self.announcements)


def _step(
    order: dict[str, Any],
    facts: dict[Fact, str | None],
    fact: Fact,
    detail: str | None,
    cause: Cause,
    now: datetime,
    writes: _Writes,
) -> str | None:
    """Add `fact` to `order`'s `facts` once, and the status they now give; both `order` and
    `facts` are updated in place, so a later answer of the same batch about the same order
    sees them. Returns the new status, or None if it stays."""
    order_id = order["order_id"]
    if fact not in facts:
        writes.facts.append(
            {
                "order_id": order_id,
                "fact": fact,
                "event_id": cause.event_id,
                "event_type": cause.event_type,
                "detail": detail,
                "recorded_at": now,
            }
        )
        facts[fact] = detail
    status = next_status(order["status"], facts.keys())
    if status is None:
        return None
    order["status"] = status
    reason = rejection_reason(facts) if status == "rejected" else None
    writes.statuses.append({"b_order": order_id, "b_status": status})
    writes.steps.append(
        {
            "order_id": order_id,
            "status": status,
            "event_id": cause.event_id,
            "event_type": cause.event_type,
            "reason": reason,
            "at": now,
        }
    )
    writes.announcements.append(_announcement(order, status, reason, now, cause))
    log.debug("order %s %s by %s %s", order_id, status, cause.event_type, cause.event_id)
    return status


async def _facts(conn: AsyncConnection, order_id: str) -> dict[Fact, str | None]:
    rows = await conn.execute(_FACTS, {"b_order": order_id})
    return {Fact(fact): detail for fact, detail in rows}


def _announcement(
    order: dict[str, Any], status: str, reason: str | None, at: datetime, cause: Cause
) -> tuple[str, CloudEvent]:
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
    event = wrap(topic, payload, correlationid=cause.correlationid)
    if cause.traceparent is not None:
        event = event.model_copy(update={"traceparent": cause.traceparent})
    return topic, event
