"""The dashboard's controls: place orders, make events fail, pause or resume an instance.

Each one calls the instances over HTTP at the URL they advertise in their activity, with this
instance's admin token (the caller has shown it already: these routes sit behind the guard).
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Annotated, Any

import httpx
from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from contracts.catalogue import CATALOGUE
from services.runtime.faults import MAX_FAIL_NEXT, MAX_PAUSE_S
from services.runtime.service import Runtime
from services.runtime.settings import SUBSCRIBERS

if TYPE_CHECKING:
    from services.console.dashboard import Dashboard

MAX_ORDERS = 200
CONCURRENCY = 8
SKUS = [p.sku for p in CATALOGUE if p.initial_stock > 1_000]
SCARCE_SKU = min(CATALOGUE, key=lambda p: p.initial_stock).sku
"""Orders of it soon run out of stock: each is rejected and compensated (the saga)."""
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class PlaceOrders(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: Annotated[int, Field(ge=1, le=MAX_ORDERS)] = 1
    customer_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "dashboard"
    scarce: bool = False
    """Order the product with the least stock, so that orders are soon rejected."""


def order_body(body: PlaceOrders) -> dict[str, Any]:
    """One order as the dashboard places it: plentiful products, or the scarce one."""
    if body.scarce:
        item = {"sku": SCARCE_SKU, "quantity": 2}
    else:
        item = {"sku": random.choice(SKUS), "quantity": random.randint(1, 3)}  # noqa: S311
    return {"customer_id": body.customer_id, "items": [item]}


class FailNext(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: Name
    count: Annotated[int, Field(ge=0, le=MAX_FAIL_NEXT)]


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instance: Name
    seconds: Annotated[float, Field(gt=0, le=MAX_PAUSE_S)] = 60.0


def _refuse(code: int, field: str, reason: str) -> HTTPException:
    return HTTPException(code, f"{field}: {reason}")


class ControlsClient:
    def __init__(self, runtime: Runtime, dashboard: Dashboard) -> None:
        self.runtime = runtime
        self.dashboard = dashboard

    def _headers(self) -> dict[str, str]:
        token = self.runtime.settings.admin_token
        assert token is not None  # the guard let the caller in, so there is one
        return {"Authorization": f"Bearer {token.get_secret_value()}"}

    def _order_url(self) -> str:
        """A live order instance's: the one place the console learns where orders go (the
        order service's port is its own setting, which this process does not read)."""
        alive = self.dashboard.alive("order")
        if not alive:
            raise _refuse(status.HTTP_404_NOT_FOUND, "order", "no live instance of order")
        return alive[0].url

    async def place(self, body: PlaceOrders) -> dict[str, Any]:
        limit = asyncio.Semaphore(CONCURRENCY)
        url = f"{self._order_url()}/orders"

        async def one(client: httpx.AsyncClient) -> str | int:
            async with limit:
                response = await client.post(url, json=order_body(body))
            return (
                str(response.json()["order_id"])
                if response.status_code == 202
                else response.status_code
            )

        try:
            async with httpx.AsyncClient(timeout=10) as client:
                # Placed to be watched: every instance records their events from the first.
                await self.dashboard.ask_to_record(client, self.dashboard.alive())
                results = await asyncio.gather(*(one(client) for _ in range(body.count)))
        except httpx.HTTPError as exc:
            raise _refuse(
                status.HTTP_502_BAD_GATEWAY, "order", f"order service: {type(exc).__name__}"
            ) from None
        placed = [r for r in results if isinstance(r, str)]
        refused = [r for r in results if isinstance(r, int)]
        return {"placed": len(placed), "order_ids": placed, "refused": refused}

    async def _call(self, url: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.post(f"{url}{path}", json=body, headers=self._headers())
        except httpx.HTTPError as exc:
            raise _refuse(
                status.HTTP_502_BAD_GATEWAY, "instance", f"{url}: {type(exc).__name__}"
            ) from None
        if response.status_code != 200:
            raise _refuse(
                status.HTTP_502_BAD_GATEWAY, "instance", f"{url}{path}: {response.status_code}"
            )
        result: dict[str, Any] = response.json()
        return result

    async def fail(self, body: FailNext) -> dict[str, Any]:
        if body.service not in SUBSCRIBERS:
            raise _refuse(
                status.HTTP_422_UNPROCESSABLE_ENTITY, "service", f"one of {', '.join(SUBSCRIBERS)}"
            )
        instances = self.dashboard.alive(body.service)
        if not instances:
            raise _refuse(
                status.HTTP_404_NOT_FOUND, "service", f"no live instance of {body.service}"
            )
        results = [await self._call(a.url, "/admin/fail", {"count": body.count}) for a in instances]
        return {"instances": results}

    def _instance_url(self, instance: str) -> str:
        for activity in self.dashboard.alive():
            if activity.instance == instance and activity.service in SUBSCRIBERS:
                return activity.url
        raise _refuse(
            status.HTTP_404_NOT_FOUND, "instance", f"no live subscriber instance {instance!r}"
        )

    def install(self, router: APIRouter) -> None:
        @router.post("/orders")
        async def place_orders(body: PlaceOrders) -> dict[str, Any]:
            return await self.place(body)

        @router.post("/fail")
        async def fail_next(body: FailNext) -> dict[str, Any]:
            return await self.fail(body)

        @router.post("/pause")
        async def pause(body: Target) -> dict[str, Any]:
            url = self._instance_url(body.instance)
            return await self._call(url, "/admin/pause", {"seconds": body.seconds})

        @router.post("/resume")
        async def resume(body: Target) -> dict[str, Any]:
            return await self._call(self._instance_url(body.instance), "/admin/resume", None)
