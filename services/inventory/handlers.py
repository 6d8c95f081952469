"""Reserve stock for an order, every line or none, and say which, a batch of orders at a time;
give it back if the order is rejected (the saga's compensation).

Both handlers first look for the order's reservation row, and both may create it: on
PostgreSQL two replicas handling `order_created` and `order_rejected` of one order at once
collide on its primary key, and the loser's event is retried and finds the winner's row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bus.port import Received
from contracts import (
    INVENTORY_REJECTED,
    INVENTORY_RESERVED,
    CloudEvent,
    InventoryRejected,
    InventoryReserved,
    OrderCreated,
    OrderItem,
    OrderRejected,
    ReservedLine,
    wrap,
)
from services.inventory.store import outbox, reservation_lines, reservations, stock
from services.runtime.inbox import traceparent_of
from services.runtime.outbox import enqueue_many

log = logging.getLogger(__name__)


# Built once, with bound parameters: built per event, a statement cost SQLAlchemy about twice
# what executing it did (docs/performance.md).
_RESERVATION = select(reservations).where(reservations.c.order_id == bindparam("b_order"))
_ADD_RESERVATION = insert(reservations)
_ADD_LINES = insert(reservation_lines)
_LINES = select(reservation_lines.c.sku, reservation_lines.c.quantity).where(
    reservation_lines.c.order_id == bindparam("b_order")
)
_RELEASE = (
    update(reservations)
    .where(reservations.c.order_id == bindparam("b_order"), reservations.c.status == "reserved")
    .values(status="released", reason=bindparam("b_reason"))
)
_STATUSES = select(reservations.c.order_id, reservations.c.status).where(
    reservations.c.order_id.in_(bindparam("b_orders", expanding=True))
)
# The batch's stock rows, locked until the transaction ends (PostgreSQL; SQLite's writers
# are serialised by BEGIN IMMEDIATE), in the order of their SKUs: two replicas locking
# overlapping sets take them in the same order. Locked, the levels can be read, changed in
# memory and written back as they are.
_LEVELS_FOR_UPDATE = (
    select(stock.c.sku, stock.c.available, stock.c.reserved)
    .where(stock.c.sku.in_(bindparam("b_skus", expanding=True)))
    .order_by(stock.c.sku)
    .with_for_update()
)
_SET_LEVEL = (
    update(stock)
    .where(stock.c.sku == bindparam("b_sku"))
    .values(available=bindparam("b_available"), reserved=bindparam("b_reserved"))
)
_GIVE_BACK = (
    update(stock)
    .where(stock.c.sku == bindparam("b_sku"))
    .values(
        available=stock.c.available + bindparam("b_quantity"),
        reserved=stock.c.reserved - bindparam("b_quantity"),
    )
)


async def reserve(conn: AsyncConnection, batch: Sequence[tuple[OrderCreated, Received]]) -> None:
    """A batch of orders, each reserved every line or none, in delivery order: the batch's
    reservations and stock levels read in one statement each (the stock rows locked), the
    lines taken in memory, then the new levels, lines, reservations and answers written in
    one statement each."""
    order_ids = sorted({str(order.order_id) for order, _ in batch})
    earlier: dict[str, str] = dict((await conn.execute(_STATUSES, {"b_orders": order_ids})).all())
    skus = sorted({item.sku for order, _ in batch for item in order.items})
    levels = {
        sku: [available, reserved]
        for sku, available, reserved in await conn.execute(_LEVELS_FOR_UPDATE, {"b_skus": skus})
    }
    changed: set[str] = set()
    lines: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    replies: list[tuple[str, CloudEvent]] = []
    now = datetime.now(UTC)
    for order, cause in batch:
        order_id = str(order.order_id)
        if order_id in earlier:
            log.info("order %s: not reserving, it is %s already", order_id, earlier[order_id])
            continue
        outcome: InventoryReserved | InventoryRejected
        shortage = _take(levels, order.items)
        if shortage is not None:
            outcome = InventoryRejected(order_id=order.order_id, reason=shortage, rejected_at=now)
            log.info("order %s rejected: %s", order_id, outcome.reason)
        else:
            changed.update(item.sku for item in order.items)
            taken = [ReservedLine(sku=i.sku, quantity=i.quantity) for i in order.items]
            outcome = InventoryReserved(order_id=order.order_id, items=taken, reserved_at=now)
            lines.extend(
                {"order_id": order_id, "line": n, "sku": line.sku, "quantity": line.quantity}
                for n, line in enumerate(taken)
            )
        status = "reserved" if shortage is None else "rejected"
        earlier[order_id] = status
        rows.append(
            {
                "order_id": order_id,
                "status": status,
                "reason": shortage,
                "instance_id": cause.delivery.consumer,
                "created_at": now,
            }
        )
        topic = INVENTORY_RESERVED if shortage is None else INVENTORY_REJECTED
        reply = wrap(topic, outcome, correlationid=cause.event.correlationid)
        if (trace := traceparent_of(cause)) is not None:
            reply = reply.model_copy(update={"traceparent": trace})
        replies.append((topic, reply))
    if changed:
        await conn.execute(
            _SET_LEVEL,
            [
                {"b_sku": sku, "b_available": levels[sku][0], "b_reserved": levels[sku][1]}
                for sku in sorted(changed)
            ],
        )
    if lines:
        await conn.execute(_ADD_LINES, lines)
    if rows:
        await conn.execute(_ADD_RESERVATION, rows)
    if replies:
        await enqueue_many(conn, outbox, replies)


def _take(levels: dict[str, list[int]], items: Sequence[OrderItem]) -> str | None:
    """Take every line of an order from `levels` (sku: [available, reserved]), or none of
    them: None if taken, else why not."""
    wanted: dict[str, int] = {}
    for item in items:
        level = levels.get(item.sku)
        available = None if level is None else level[0] - wanted.get(item.sku, 0)
        if available is None or available < item.quantity:
            return (
                f"insufficient stock for {item.sku}: wanted {item.quantity}, available {available}"
            )
        wanted[item.sku] = wanted.get(item.sku, 0) + item.quantity
    for sku, quantity in wanted.items():
        levels[sku][0] -= quantity
        levels[sku][1] += quantity
    return None


async def release(conn: AsyncConnection, rejected: OrderRejected, cause: Received) -> None:
    """`order_rejected`: nothing may stay reserved for the order, now or later."""
    order_id = str(rejected.order_id)
    earlier = await _reservation(conn, order_id)
    if earlier is None:
        # The rejection overtook `order_created`: record it, so that nothing is reserved then.
        await conn.execute(
            _ADD_RESERVATION,
            {
                "order_id": order_id,
                "status": "cancelled",
                "reason": rejected.reason,
                "instance_id": cause.delivery.consumer,
                "created_at": datetime.now(UTC),
            },
        )
        return
    # Conditional, so a reservation is given back once whatever else runs concurrently.
    released = await conn.execute(_RELEASE, {"b_order": order_id, "b_reason": rejected.reason})
    if released.rowcount != 1:
        return  # rejected by us (nothing held), or released already
    lines = (await conn.execute(_LINES, {"b_order": order_id})).all()
    # Its stock rows locked first, in the order `reserve` locks them (the database's order of
    # SKUs), so that the two never wait on each other in a cycle.
    await conn.execute(_LEVELS_FOR_UPDATE, {"b_skus": sorted({sku for sku, _ in lines})})
    for sku, quantity in lines:
        await conn.execute(_GIVE_BACK, {"b_sku": sku, "b_quantity": quantity})
    log.info("order %s: reservation released (%s)", order_id, rejected.reason)


async def _reservation(conn: AsyncConnection, order_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(_RESERVATION, {"b_order": order_id})).mappings().first()
    return dict(row) if row is not None else None
