"""Billing HTTP API: `GET /invoices/{order_id}`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Path
from sqlalchemy import select

from contracts import ORDER_CREATED
from services.billing.handlers import issue_invoice
from services.billing.store import invoices, metadata
from services.runtime.app import Runtime, ServiceSpec, Subscription


def routes(runtime: Runtime) -> APIRouter:
    router = APIRouter()

    @router.get("/invoices/{order_id}")
    async def invoice(order_id: str = Path(max_length=64)) -> dict[str, Any]:
        query = select(invoices).where(invoices.c.order_id == order_id)
        async with runtime.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise HTTPException(404, detail=f"no invoice for order {order_id}")
        return dict(row)

    return router


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="billing",
        metadata=metadata,
        routes=routes,
        subscriptions=[Subscription(ORDER_CREATED, issue_invoice)],
    )
