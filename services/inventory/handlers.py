"""Reserve stock for an order, every line or none, and say which; give it back if the order is
rejected (the saga's compensation). Both a batch of events at a time.

Both handlers first look for the order's reservation row, and both may create it: on
PostgreSQL two replicas handling `order_created` and `order_rejected` of one order at once
collide on its primary key, and the loser's event is retried and finds the winner's row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from operator import itemgetter
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
_ADD_RESERVATION = insert(reservations)
_ADD_LINES = insert(reservation_lines)
_LINES_OF = select(
    reservation_lines.c.order_id, reservation_lines.c.sku, reservation_lines.c.quantity
).where(reservation_lines.c.order_id.in_(bindparam("b_orders", expanding=True)))
_RELEASE = (
    update(reservations)
    .where(reservations.c.order_id == bindparam("b_order"), reservations.c.status == "reserved")
    .values(status="released", reason=bindparam("b_reason"))
)
_STATUSES = select(reservations.c.order_id, reservations.c.status).where(
    reservations.c.order_id.in_(bindparam("b_orders", expanding=True))
)
# Locked (PostgreSQL), in the order of their ids: two replicas' batches never wait on each
# other in a cycle, and a release's status cannot change before it is written.
_RESERVATIONS_FOR_UPDATE = _STATUSES.order_by(reservations.c.order_id).with_for_update()
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
            log.debug("order %s: not reserving, it is %s already", order_id, earlier[order_id])
            continue
        outcome: InventoryReserved | InventoryRejected
        shortage = _take(levels, order.items)
        if shortage is not None:
            outcome = InventoryRejected(order_id=order.order_id, reason=shortage, rejected_at=now)
            log.debug("order %s rejected: %s", order_id, outcome.reason)
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
    if short := sum(topic == INVENTORY_REJECTED for topic, _ in replies):
        log.info("orders rejected for want of stock: %d of %d", short, len(replies))
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
        # In the order of their ids, as `release` inserts its cancelled ones: two
        # transactions inserting the same new keys never take them in opposite orders.
        await conn.execute(_ADD_RESERVATION, sorted(rows, key=itemgetter("order_id")))
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


async def release(conn: AsyncConnection, batch: Sequence[tuple[OrderRejected, Received]]) -> None:
    """A batch of `order_rejected`: nothing may stay reserved for their orders, now or later.

    The batch's reservations are locked and read, then the stock rows of those to give back
    (in SKU order, as `reserve` takes them); the levels, the released reservations, and the
    rejections that overtook `order_created` (recorded as cancelled, so that nothing is
    reserved then) are written in one statement each. The cancelled ones go last, once every
    stock row is held, and in the order of their ids, as `reserve` inserts its rows: a
    replica's `reserve` of the same orders may wait for this transaction, never the two for
    each other."""
    order_ids = sorted({str(rejected.order_id) for rejected, _ in batch})
    statuses: dict[str, str] = dict(
        (await conn.execute(_RESERVATIONS_FOR_UPDATE, {"b_orders": order_ids})).all()
    )
    releasing: dict[str, str] = {}
    cancelled: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    for rejected, cause in batch:
        order_id = str(rejected.order_id)
        status = statuses.get(order_id)
        if status is None:
            cancelled.append(
                {
                    "order_id": order_id,
                    "status": "cancelled",
                    "reason": rejected.reason,
                    "instance_id": cause.delivery.consumer,
                    "created_at": now,
                }
            )
            statuses[order_id] = "cancelled"
        elif status == "reserved":
            releasing[order_id] = rejected.reason  # once, if it comes twice in the batch
        # else: rejected by us (nothing held), cancelled or released already
    if releasing:
        lines = (await conn.execute(_LINES_OF, {"b_orders": sorted(releasing)})).all()
        skus = sorted({sku for _, sku, _ in lines})
        levels = {
            sku: [available, reserved]
            for sku, available, reserved in await conn.execute(_LEVELS_FOR_UPDATE, {"b_skus": skus})
        }
        for _, sku, quantity in lines:
            levels[sku][0] += quantity
            levels[sku][1] -= quantity
        await conn.execute(
            _SET_LEVEL,
            [
                {"b_sku": sku, "b_available": levels[sku][0], "b_reserved": levels[sku][1]}
                for sku in skus
            ],
        )
        await conn.execute(
            _RELEASE,
            [{"b_order": order_id, "b_reason": reason} for order_id, reason in releasing.items()],
        )
        for order_id, reason in releasing.items():
            log.debug("order %s: reservation released (%s)", order_id, reason)
        log.info("reservations released: %d", len(releasing))
    if cancelled:
        await conn.execute(_ADD_RESERVATION, sorted(cancelled, key=itemgetter("order_id")))
