"""The order service's database: orders, their items, the catalogue and the outbox."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.catalogue import CATALOGUE
from services.runtime.database import UtcDateTime
from services.runtime.outbox import outbox_table

metadata = MetaData()

# Money is stored as decimal text: exact on SQLite, which has no decimal type.
products = Table(
    "products",
    metadata,
    Column("sku", String(32), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("unit_price", String(20), nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("total", String(20), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", UtcDateTime, nullable=False, index=True),
    Column("idempotency_key", String(128), unique=True),
    Column("request_hash", String(64)),
)

order_items = Table(
    "order_items",
    metadata,
    Column("order_id", String(36), ForeignKey("orders.order_id"), primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("sku", String(32), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", String(20), nullable=False),
)

order_facts = Table(
    "order_facts",
    metadata,
    Column("order_id", String(36), ForeignKey("orders.order_id"), primary_key=True),
    Column("fact", String(32), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("detail", String(200)),
    Column("recorded_at", UtcDateTime, nullable=False),
)
"""What other services said about an order (`services.order.lifecycle.Fact`), once each: the
order's status is derived from these, never from the order they arrived in."""

order_history = Table(
    "order_history",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(36), ForeignKey("orders.order_id"), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("reason", String(200)),
    Column("at", UtcDateTime, nullable=False),
)
"""Each status an order took, with the event that caused it."""

outbox = outbox_table(metadata)


async def seed_catalogue(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        known = set((await conn.execute(select(products.c.sku))).scalars())
        missing = [
            {"sku": p.sku, "name": p.name, "unit_price": str(p.unit_price)}
            for p in CATALOGUE
            if p.sku not in known
        ]
        if missing:
            await conn.execute(insert(products), missing)
