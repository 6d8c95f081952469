"""Reserve stock for an order, every line or none, and say which; give it back if the order
is rejected (the saga's compensation).

Both handlers first look for the order's reservation row, and both may create it: on
PostgreSQL two replicas handling `order_created` and `order_rejected` of one order at once
collide on its primary key, and the loser's event is retried and finds the winner's row.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bus.port import Received
from contracts import (
    INVENTORY_REJECTED,
    INVENTORY_RESERVED,
    InventoryRejected,
    InventoryReserved,
    OrderCreated,
    OrderRejected,
    ReservedLine,
    wrap,
)
from services.inventory.store import outbox, reservation_lines, reservations, stock
from services.runtime.outbox import enqueue

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
# One conditional UPDATE: atomic against concurrent replicas on any database.
_TAKE = (
    update(stock)
    .where(stock.c.sku == bindparam("b_sku"), stock.c.available >= bindparam("b_quantity"))
    .values(
        available=stock.c.available - bindparam("b_quantity"),
        reserved=stock.c.reserved + bindparam("b_quantity"),
    )
)
_GIVE_BACK = (
    update(stock)
    .where(stock.c.sku == bindparam("b_sku"))
    .values(
        available=stock.c.available + bindparam("b_quantity"),
        reserved=stock.c.reserved - bindparam("b_quantity"),
    )
)
_AVAILABLE = select(stock.c.available).where(stock.c.sku == bindparam("b_sku"))


class OutOfStock(Exception):
    pass


async def reserve(conn: AsyncConnection, order: OrderCreated, cause: Received) -> None:
    order_id = str(order.order_id)
    earlier = await _reservation(conn, order_id)
    if earlier is not None:
        log.info("order %s: not reserving, it is %s already", order_id, earlier["status"])
        return
    now = datetime.now(UTC)
    outcome: InventoryReserved | InventoryRejected
    try:
        # A savepoint: a short line undoes the lines already taken, not the inbox row.
        async with conn.begin_nested():
            for item in order.items:
                await _take(conn, item.sku, item.quantity)
    except OutOfStock as short:
        outcome = InventoryRejected(order_id=order.order_id, reason=str(short), rejected_at=now)
        log.info("order %s rejected: %s", order_id, outcome.reason)
    else:
        lines = [ReservedLine(sku=i.sku, quantity=i.quantity) for i in order.items]
        outcome = InventoryReserved(order_id=order.order_id, items=lines, reserved_at=now)
        await conn.execute(
            _ADD_LINES,
            [
                {"order_id": order_id, "line": n, "sku": line.sku, "quantity": line.quantity}
                for n, line in enumerate(lines)
            ],
        )
    rejected = isinstance(outcome, InventoryRejected)
    await conn.execute(
        _ADD_RESERVATION,
        {
            "order_id": order_id,
            "status": "rejected" if rejected else "reserved",
            "reason": outcome.reason if isinstance(outcome, InventoryRejected) else None,
            "instance_id": cause.delivery.consumer,
            "created_at": now,
        },
    )
    topic = INVENTORY_REJECTED if rejected else INVENTORY_RESERVED
    reply = wrap(topic, outcome, correlationid=cause.event.correlationid)
    await enqueue(conn, outbox, topic, reply)


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
    for sku, quantity in lines:
        await conn.execute(_GIVE_BACK, {"b_sku": sku, "b_quantity": quantity})
    log.info("order %s: reservation released (%s)", order_id, rejected.reason)


async def _reservation(conn: AsyncConnection, order_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(_RESERVATION, {"b_order": order_id})).mappings().first()
    return dict(row) if row is not None else None


async def _take(conn: AsyncConnection, sku: str, quantity: int) -> None:
    taken = await conn.execute(_TAKE, {"b_sku": sku, "b_quantity": quantity})
    if taken.rowcount != 1:
        available = (await conn.execute(_AVAILABLE, {"b_sku": sku})).scalar()
        raise OutOfStock(f"insufficient stock for {sku}: wanted {quantity}, available {available}")
