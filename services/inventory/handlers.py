"""Reserve stock for an order: every line or none, recorded either way."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bus import Delivery
from contracts import CloudEvent, OrderCreated
from services.inventory.store import reservations, stock

log = logging.getLogger(__name__)


class OutOfStock(Exception):
    pass


async def reserve(conn: AsyncConnection, event: CloudEvent, delivery: Delivery) -> None:
    order = OrderCreated.model_validate(event.data)
    status, reason = "reserved", None
    try:
        # A savepoint: a short line undoes the lines already taken, not the inbox row.
        async with conn.begin_nested():
            for item in order.items:
                await _take(conn, item.sku, item.quantity)
    except OutOfStock as short:
        status, reason = "rejected", str(short)
        log.info("order %s rejected: %s", order.order_id, reason)
    await conn.execute(
        insert(reservations).values(
            order_id=str(order.order_id),
            status=status,
            reason=reason,
            instance_id=delivery.consumer,
            created_at=datetime.now(UTC),
        )
    )


async def _take(conn: AsyncConnection, sku: str, quantity: int) -> None:
    # One conditional UPDATE: atomic against concurrent replicas on any database.
    taken = await conn.execute(
        update(stock)
        .where(stock.c.sku == sku, stock.c.available >= quantity)
        .values(available=stock.c.available - quantity, reserved=stock.c.reserved + quantity)
    )
    if taken.rowcount != 1:
        available = (
            await conn.execute(select(stock.c.available).where(stock.c.sku == sku))
        ).scalar()
        raise OutOfStock(f"insufficient stock for {sku}: wanted {quantity}, available {available}")
