"""Billing HTTP API: `GET /invoices/{order_id}`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from sqlalchemy import case, select

from contracts import ORDER_CREATED, ORDER_REJECTED, OrderCreated, OrderRejected, published_by
from services.billing.handlers import issue_invoice, void_invoice
from services.billing.store import invoices, metadata, outbox, voids
from services.runtime.database import one_or_404
from services.runtime.service import Runtime, ServiceSpec, Subscription


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


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="billing",
        metadata=metadata,
        routes=routes,
        subscriptions=[
            Subscription(ORDER_CREATED, OrderCreated, issue_invoice),
            Subscription(ORDER_REJECTED, OrderRejected, void_invoice),
        ],
        outbox=outbox,
        publishes=published_by("billing"),
    )
