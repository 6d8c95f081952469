"""Billing HTTP API: `GET /invoices/{order_id}`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from sqlalchemy import select

from contracts import ORDER_CREATED
from services.billing.handlers import issue_invoice
from services.billing.store import invoices, metadata
from services.runtime.app import Runtime, ServiceSpec, Subscription
from services.runtime.database import one_or_404


def routes(runtime: Runtime) -> APIRouter:
    router = APIRouter()

    @router.get("/invoices/{order_id}")
    async def invoice(order_id: str = Path(max_length=64)) -> dict[str, Any]:
        query = select(invoices).where(invoices.c.order_id == order_id)
        return await one_or_404(runtime.engine, query, f"no invoice for order {order_id}")

    return router


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="billing",
        metadata=metadata,
        routes=routes,
        subscriptions=[Subscription(ORDER_CREATED, issue_invoice)],
    )
