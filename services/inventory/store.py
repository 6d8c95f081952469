"""The inventory database: stock per SKU, one reservation outcome per order and its lines."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.catalogue import CATALOGUE
from services.runtime.database import UtcDateTime
from services.runtime.outbox import outbox_table

metadata = MetaData()

stock = Table(
    "stock",
    metadata,
    Column("sku", String(32), primary_key=True),
    Column("available", Integer, nullable=False),
    Column("reserved", Integer, nullable=False),
    CheckConstraint("available >= 0", name="available_not_negative"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("order_id", String(36), primary_key=True),
    # reserved: stock held for every line; rejected: short, nothing held; released: held, then
    # given back because the order was rejected; cancelled: the rejection came first.
    Column("status", String(16), nullable=False),
    Column("reason", String(200)),
    Column("instance_id", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

reservation_lines = Table(
    "reservation_lines",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("sku", String(32), nullable=False),
    Column("quantity", Integer, nullable=False),
)
"""What a reservation holds, so that releasing it gives back exactly that."""

outbox = outbox_table(metadata)


async def seed_stock(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        known = set((await conn.execute(select(stock.c.sku))).scalars())
        missing = [
            {"sku": p.sku, "available": p.initial_stock, "reserved": 0}
            for p in CATALOGUE
            if p.sku not in known
        ]
        if missing:
            await conn.execute(insert(stock), missing)
