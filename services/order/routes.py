"""Order service HTTP API: `POST /orders`, `GET /orders[/{id}]`, `GET /products`."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bus.codec import EventTooLarge
from contracts import (
    ORDER_CREATED,
    OrderCreated,
    OrderItem,
    wrap,
)
from contracts.api import (
    OrderAccepted,
    OrderPage,
    OrderTransition,
    OrderView,
    PlaceOrder,
    PricedLine,
    ProductView,
)
from contracts.catalogue import CURRENCY
from services.order.prices import PriceList
from services.order.ratelimit import RateLimiter, Refusal, check
from services.order.settings import OrderSettings
from services.order.store import (
    order_history,
    order_items,
    orders,
    products,
)
from services.order.writer import NewOrder, OrderWriter
from services.runtime.asyncapi_routes import asyncapi_routes
from services.runtime.http import error_body
from services.runtime.service import Runtime

IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", pattern=r"^[\x21-\x7e]{1,128}$")
]
CorrelationId = Annotated[
    str | None, Header(alias="X-Correlation-ID", pattern=r"^[\x21-\x7e]{1,128}$")
]


def _unprocessable(field: str, reason: str) -> JSONResponse:
    return JSONResponse(error_body("invalid request", [{"field": field, "reason": reason}]), 422)


def _too_many(refusal: Refusal) -> JSONResponse:
    verdict = refusal.verdict
    whose = " from this client" if refusal.field == "client" else ""
    reason = (
        f"at most {verdict.limit} orders{whose} per {verdict.window_s} s; "
        f"retry after {verdict.retry_after_s} s"
    )
    return JSONResponse(
        error_body("too many orders", [{"field": refusal.field, "reason": reason}]),
        429,
        headers={"Retry-After": str(verdict.retry_after_s)},
    )


def _too_large(error: EventTooLarge) -> JSONResponse:
    reason = (
        f"the order's event would be {error.size} bytes; the limit is {error.max_bytes} "
        "(BUS_MAX_EVENT_BYTES): place fewer items per order"
    )
    return JSONResponse(error_body("order too large", [{"field": "items", "reason": reason}]), 413)


def _scoped(customer_id: str, key: str) -> str:
    """The key as stored: one customer's key, unknown to any other (a key another customer
    chose, or guessed, finds nothing). Hashed: both together would not fit the column."""
    return hashlib.sha256(f"{customer_id}\n{key}".encode()).hexdigest()


def _fingerprint(request: PlaceOrder) -> str:
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def routes(
    runtime: Runtime, own: OrderSettings, limiter: RateLimiter | None, writer: OrderWriter
) -> APIRouter:
    router = APIRouter()
    price_list = PriceList()

    @router.get("/products")
    async def list_products() -> list[ProductView]:
        async with runtime.engine.connect() as conn:
            rows = (await conn.execute(select(products).order_by(products.c.sku))).mappings()
            return [ProductView.model_validate(dict(r)) for r in rows]

    @router.post(
        "/orders",
        status_code=202,
        response_model=OrderAccepted,
        responses={
            413: {"description": "the order's event would exceed BUS_MAX_EVENT_BYTES"},
            429: {"description": "too many orders from this customer or client; see Retry-After"},
        },
    )
    async def place_order(
        request: PlaceOrder,
        http: Request,
        idempotency_key: IdempotencyKey = None,
        correlation_id: CorrelationId = None,
    ) -> Any:
        fingerprint = _fingerprint(request)
        if idempotency_key is not None:
            idempotency_key = _scoped(request.customer_id, idempotency_key)
            earlier = await _by_idempotency_key(runtime, idempotency_key, fingerprint)
            if earlier is not None:
                return earlier
        prices = await price_list.of(runtime.engine, {line.sku for line in request.items})
        for n, line in enumerate(request.items):
            if line.sku not in prices:
                return _unprocessable(f"items.{n}.sku", f"unknown sku {line.sku!r}")
        # Counted only once the order is known to be valid and is not a replay, and before
        # anything is written: a refused order leaves no trace but the count.
        if limiter is not None:
            client = http.client.host if http.client is not None else "unknown"
            refusal = await check(limiter, own, client, request.customer_id)
            if refusal is not None:
                return _too_many(refusal)
        order = OrderCreated(
            order_id=uuid.uuid4(),
            customer_id=request.customer_id,
            items=[
                OrderItem(sku=i.sku, quantity=i.quantity, unit_price=prices[i.sku])
                for i in request.items
            ],
            total=sum((prices[i.sku] * i.quantity for i in request.items), Decimal("0.00")),
            currency=CURRENCY,
            created_at=datetime.now(UTC),
        )
        event = wrap(ORDER_CREATED, order, correlationid=correlation_id or str(uuid.uuid4()))
        try:
            await writer.write(NewOrder(order, event, idempotency_key, fingerprint))
        except EventTooLarge as too_large:
            return _too_large(too_large)
        except IntegrityError:
            # The same Idempotency-Key raced us and won: answer as it did.
            if idempotency_key is None:
                raise
            earlier = await _by_idempotency_key(runtime, idempotency_key, fingerprint)
            if earlier is None:
                raise
            return earlier
        return OrderAccepted(order_id=order.order_id, status="pending")

    @router.get("/orders/{order_id}")
    async def get_order(order_id: uuid.UUID) -> OrderView:
        async with runtime.engine.connect() as conn:
            views = await _views(conn, select(orders).where(orders.c.order_id == str(order_id)))
        if not views:
            raise HTTPException(404, detail=f"no order {order_id}")
        return views[0]

    @router.get("/orders")
    async def list_orders(
        limit: int = Query(50, ge=1, le=200),
        offset: int = Query(0, ge=0, le=1_000_000),
        customer_id: str | None = Query(None, max_length=64),
    ) -> OrderPage:
        query = select(orders)
        count = select(func.count()).select_from(orders)
        if customer_id is not None:
            query = query.where(orders.c.customer_id == customer_id)
            count = count.where(orders.c.customer_id == customer_id)
        query = query.order_by(orders.c.created_at.desc(), orders.c.order_id)
        async with runtime.engine.connect() as conn:
            page = await _views(conn, query.limit(limit).offset(offset))
            total = (await conn.execute(count)).scalar_one()
        return OrderPage(orders=page, limit=limit, offset=offset, total=total)

    router.include_router(asyncapi_routes(runtime.settings.bus.backend))
    return router


async def _by_idempotency_key(
    runtime: Runtime, key: str, fingerprint: str
) -> OrderAccepted | JSONResponse | None:
    async with runtime.engine.connect() as conn:
        row = (
            await conn.execute(
                select(orders.c.order_id, orders.c.request_hash).where(
                    orders.c.idempotency_key == key
                )
            )
        ).first()
    if row is None:
        return None
    if row.request_hash != fingerprint:
        return _unprocessable(
            "Idempotency-Key", "already used for a different request; use a new key"
        )
    # The first answer again, as promised, even if the order has been decided since: the
    # outcome is on GET /orders/{order_id}.
    return OrderAccepted(order_id=uuid.UUID(row.order_id), status="pending")


async def _views(conn: AsyncConnection, query: Any) -> list[OrderView]:
    found = (await conn.execute(query)).mappings().all()
    if not found:
        return []
    ids = [row["order_id"] for row in found]
    lines: dict[str, list[PricedLine]] = {order_id: [] for order_id in ids}
    item_rows = await conn.execute(
        select(order_items).where(order_items.c.order_id.in_(ids)).order_by(order_items.c.line)
    )
    for item in item_rows.mappings():
        lines[item["order_id"]].append(
            PricedLine(
                sku=item["sku"], quantity=item["quantity"], unit_price=Decimal(item["unit_price"])
            )
        )
    history: dict[str, list[OrderTransition]] = {order_id: [] for order_id in ids}
    steps = await conn.execute(
        select(order_history).where(order_history.c.order_id.in_(ids)).order_by(order_history.c.seq)
    )
    for step in steps.mappings():
        history[step["order_id"]].append(OrderTransition.model_validate(dict(step)))
    return [
        OrderView(
            order_id=uuid.UUID(row["order_id"]),
            customer_id=row["customer_id"],
            status=row["status"],
            items=lines[row["order_id"]],
            total=Decimal(row["total"]),
            currency=row["currency"],
            created_at=row["created_at"],
            history=history[row["order_id"]],
        )
        for row in found
    ]
