"""Inventory HTTP API: `GET /stock`, `GET /stock/{sku}`, `GET /reservations/{order_id}`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from sqlalchemy import select

from services.inventory.store import reservations, stock
from services.runtime.database import one_or_404, reading
from services.runtime.service import Runtime


def routes(runtime: Runtime) -> APIRouter:
    router = APIRouter()

    @router.get("/stock")
    async def all_stock() -> list[dict[str, Any]]:
        async with reading(runtime.engine) as conn:
            rows = await conn.execute(select(stock).order_by(stock.c.sku))
            return [dict(r) for r in rows.mappings()]

    @router.get("/stock/{sku}")
    async def one_sku(sku: str = Path(max_length=32)) -> dict[str, Any]:
        query = select(stock).where(stock.c.sku == sku)
        return await one_or_404(runtime.engine, query, f"no sku {sku!r}")

    @router.get("/reservations/{order_id}")
    async def reservation(order_id: str = Path(max_length=64)) -> dict[str, Any]:
        query = select(reservations).where(reservations.c.order_id == order_id)
        return await one_or_404(runtime.engine, query, f"no reservation for order {order_id}")

    return router
