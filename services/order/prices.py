"""The catalogue's prices, as `POST /orders` reads them: from the database, kept for a moment.

Reading them per order was a transaction of its own on the service's one SQLite connection,
ahead of the order's own. Products change rarely (nothing in the system changes them; an
operator may, in the database): a price is used for at most `FRESH_S` after it was read, and
an unknown SKU makes a fresh read at most every `MISS_S`, so a new product is sold at once and
a flood of bad SKUs costs at most one read per `MISS_S`.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.order.store import products
from services.runtime.database import reading

FRESH_S = 5.0
MISS_S = 1.0


class PriceList:
    def __init__(self) -> None:
        self._prices: dict[str, Decimal] = {}
        self._read_at = float("-inf")
        self._reading = asyncio.Lock()

    async def of(self, engine: AsyncEngine, skus: set[str]) -> dict[str, Decimal]:
        """The price of each of `skus` that the catalogue has."""
        age = asyncio.get_running_loop().time() - self._read_at
        if age > FRESH_S or (not skus <= self._prices.keys() and age > MISS_S):
            await self._read(engine, age)
        return {sku: self._prices[sku] for sku in skus if sku in self._prices}

    async def _read(self, engine: AsyncEngine, age_seen: float) -> None:
        async with self._reading:
            clock = asyncio.get_running_loop().time
            if clock() - self._read_at < age_seen:
                return  # another request read them while this one waited
            async with reading(engine) as conn:
                rows = await conn.execute(select(products.c.sku, products.c.unit_price))
                self._prices = {sku: Decimal(price) for sku, price in rows}
            self._read_at = clock()
