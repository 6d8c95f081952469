"""Admin endpoint on every service with an outbox: the rows parked as unpublishable.

Behind the admin token: a parked row holds a customer's order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select

from services.runtime.admin import admin_guard
from services.runtime.database import reading

if TYPE_CHECKING:
    from services.runtime.outbox import OutboxRelay
    from services.runtime.service import Runtime


def outbox_routes(runtime: Runtime, relay: OutboxRelay) -> APIRouter:
    router = APIRouter(
        prefix="/outbox",
        tags=["admin"],
        dependencies=[Depends(admin_guard(runtime.settings.admin_token))],
    )
    parked = relay.parked

    @router.get("/parked")
    async def list_parked(
        limit: int = Query(100, ge=1, le=1_000),
        full: bool = Query(False, description="include each row's payload"),
    ) -> dict[str, Any]:
        columns = [parked.c.seq, parked.c.event_id, parked.c.topic, parked.c.reason]
        query = select(*columns, parked.c.parked_at, func.length(parked.c.payload).label("bytes"))
        if full:
            query = query.add_columns(parked.c.payload)
        async with reading(runtime.engine) as conn:
            count = (await conn.execute(select(func.count()).select_from(parked))).scalar_one()
            rows = (await conn.execute(query.order_by(parked.c.seq).limit(limit))).mappings()
            found = [dict(row) for row in rows]
        return {"service": runtime.service, "count": count, "parked": found}

    return router
