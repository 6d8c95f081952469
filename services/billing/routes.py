"""Billing HTTP API: `GET /invoices/{order_id}`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from sqlalchemy import case, select

from services.billing.store import invoices, voids
from services.runtime.database import one_or_404
from services.runtime.service import Runtime


def routes(runtime: Runtime) -> APIRouter:
    router = APIRouter()

    @router.get("/invoices/{order_id}")
    async def invoice(order_id: str = Path(max_length=64)) -> dict[str, Any]:
        """The order's invoice: `status` is `issued`, or `voided` with `voided_at` and why."""
        query = (
            select(
                invoices,
                case((voids.c.order_id.is_(None), "issued"), else_="voided").label("status"),
                voids.c.voided_at,
                voids.c.reason.label("void_reason"),
            )
            .outerjoin(voids, voids.c.order_id == invoices.c.order_id)
            .where(invoices.c.order_id == order_id)
        )
        return await one_or_404(runtime.engine, query, f"no invoice for order {order_id}")

    return router
