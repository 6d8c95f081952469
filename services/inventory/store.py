"""The inventory database: stock per SKU and one reservation outcome per order."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.catalogue import CATALOGUE
from services.runtime.database import UtcDateTime

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
    Column("status", String(16), nullable=False),  # reserved | rejected
    Column("reason", String(200)),
    Column("instance_id", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)


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
