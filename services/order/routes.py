"""Order service HTTP API: `POST /orders`, `GET /orders[/{id}]`, `GET /products`."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import StringConstraints, TypeAdapter, ValidationError
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
from contracts.ids import new_id
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
from services.runtime.database import reading
from services.runtime.http import answered_by, error_body, is_json_media_type
from services.runtime.service import Runtime

HEADER_PATTERN = r"^[\x21-\x7e]{1,128}$"
"""An `Idempotency-Key` or `X-Correlation-ID`: printable ASCII without spaces, 128 at most."""
IDEMPOTENCY_KEY = "Idempotency-Key"
CORRELATION_ID = "X-Correlation-ID"
IdempotencyKey = Annotated[str | None, Header(alias=IDEMPOTENCY_KEY, pattern=HEADER_PATTERN)]
CorrelationId = Annotated[str | None, Header(alias=CORRELATION_ID, pattern=HEADER_PATTERN)]
_header_value: TypeAdapter[str] = TypeAdapter(
    Annotated[str, StringConstraints(pattern=HEADER_PATTERN)]
)


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


def _client(http: Request) -> str:
    return http.client.host if http.client is not None else "unknown"


def _header(http: Request, name: str, errors: list[dict[str, Any]]) -> str | None:
    """The header `name` as its `Header` parameter reads it; a bad value's error goes to
    `errors`, located as FastAPI locates it."""
    value = http.headers.get(name)
    if value is None:
        return None
    try:
        return _header_value.validate_python(value)
    except ValidationError as invalid:
        errors.extend({**e, "loc": ("header", name)} for e in invalid.errors(include_url=False))
        return None


def _place_order_body(
    body: bytes, content_type: str | None, errors: list[dict[str, Any]]
) -> PlaceOrder | None:
    """The body as FastAPI reads a `PlaceOrder` parameter: JSON only when its type says so
    (any other body is validated as the bytes it is, and refused); errors go to `errors`.
    A good body is parsed and validated in one step; a bad one again, FastAPI's way (parsed,
    then validated as Python), so that its errors read as on every other route."""
    if not body:
        errors.append({"type": "missing", "loc": ("body",), "msg": "Field required"})
        return None
    if is_json_media_type(content_type):
        with contextlib.suppress(ValidationError):
            return PlaceOrder.model_validate_json(body)
        try:
            parsed: Any = json.loads(body)
        except (ValueError, RecursionError) as undecodable:  # not JSON, not UTF-8, too deep
            at = undecodable.pos if isinstance(undecodable, json.JSONDecodeError) else 0
            errors.append({"type": "json_invalid", "loc": ("body", at), "msg": "JSON decode error"})
            return None
    else:
        parsed = body
    try:
        return PlaceOrder.model_validate(parsed)
    except ValidationError as invalid:
        errors.extend({**e, "loc": ("body", *e["loc"])} for e in invalid.errors(include_url=False))
        return None


def _fingerprint(request: PlaceOrder) -> str:
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def routes(
    runtime: Runtime, own: OrderSettings, limiter: RateLimiter | None, writer: OrderWriter
) -> APIRouter:
    router = APIRouter()
    price_list = PriceList()

    @router.get("/products")
    async def list_products() -> list[ProductView]:
        async with reading(runtime.engine) as conn:
            rows = (await conn.execute(select(products).order_by(products.c.sku))).mappings()
            return [ProductView.model_validate(dict(r)) for r in rows]

    async def place(
        request: PlaceOrder, idempotency_key: str | None, correlation_id: str | None, client: str
    ) -> OrderAccepted | JSONResponse:
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
            refusal = await check(limiter, own, client, request.customer_id)
            if refusal is not None:
                return _too_many(refusal)
        order = OrderCreated(
            order_id=new_id(),
            customer_id=request.customer_id,
            items=[
                OrderItem(sku=i.sku, quantity=i.quantity, unit_price=prices[i.sku])
                for i in request.items
            ],
            total=sum((prices[i.sku] * i.quantity for i in request.items), Decimal("0.00")),
            currency=CURRENCY,
            created_at=datetime.now(UTC),
        )
        event = wrap(ORDER_CREATED, order, correlationid=correlation_id or str(new_id()))
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

    async def place_order(
        request: PlaceOrder,
        http: Request,
        idempotency_key: IdempotencyKey = None,
        correlation_id: CorrelationId = None,
    ) -> Any:
        """The route's signature, for OpenAPI only: an `answered_by` route never calls its
        endpoint. `answer_place_order` answers, reading these same parameters itself."""

    async def answer_place_order(http: Request) -> Response:
        body = await http.body()
        body_errors: list[dict[str, Any]] = []
        request = _place_order_body(body, http.headers.get("content-type"), body_errors)
        if body_errors and body_errors[0]["type"] == "json_invalid":
            # As FastAPI: a body it cannot parse is the one error, before any header's.
            raise RequestValidationError(body_errors, body=body)
        errors: list[dict[str, Any]] = []
        idempotency_key = _header(http, IDEMPOTENCY_KEY, errors)
        correlation_id = _header(http, CORRELATION_ID, errors)
        errors += body_errors
        if request is None or errors:
            raise RequestValidationError(errors, body=body)
        answer = await place(request, idempotency_key, correlation_id, _client(http))
        if isinstance(answer, Response):
            return answer
        return Response(answer.model_dump_json(), 202, media_type="application/json")

    router.add_api_route(
        "/orders",
        place_order,
        methods=["POST"],
        status_code=202,
        response_model=OrderAccepted,
        responses={
            413: {"description": "the order's event would exceed BUS_MAX_EVENT_BYTES"},
            429: {"description": "too many orders from this customer or client; see Retry-After"},
        },
        route_class_override=answered_by(answer_place_order),
    )

    @router.get("/orders/{order_id}")
    async def get_order(order_id: uuid.UUID) -> OrderView:
        async with reading(runtime.engine) as conn:
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
        async with reading(runtime.engine) as conn:
            page = await _views(conn, query.limit(limit).offset(offset))
            total = (await conn.execute(count)).scalar_one()
        return OrderPage(orders=page, limit=limit, offset=offset, total=total)

    router.include_router(asyncapi_routes(runtime.settings.bus.backend))
    return router


async def _by_idempotency_key(
    runtime: Runtime, key: str, fingerprint: str
) -> OrderAccepted | JSONResponse | None:
    async with reading(runtime.engine) as conn:
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
