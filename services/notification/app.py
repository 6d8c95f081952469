"""Notification HTTP API: `GET /notifications?order_id=` and the WebSocket `/ws`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from sqlalchemy import select

from contracts import ORDER_CREATED
from services.notification.handlers import record_notification, send_and_push
from services.notification.live import LiveClients
from services.notification.store import metadata, notifications
from services.runtime.app import Runtime, ServiceSpec, Subscription


def routes(runtime: Runtime, live: LiveClients) -> APIRouter:
    router = APIRouter()

    @router.get("/notifications")
    async def list_notifications(
        order_id: str | None = Query(None, max_length=64),
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        query = select(notifications).order_by(notifications.c.created_at.desc()).limit(limit)
        if order_id is not None:
            query = query.where(notifications.c.order_id == order_id)
        async with runtime.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    @router.websocket("/ws")
    async def websocket(client: WebSocket) -> None:
        await client.accept()
        if not live.admit(client):
            await client.close(code=1013, reason="too many clients")
            return
        try:
            await client.send_json({"type": "hello", "instance": runtime.instance})
            while True:  # clients only listen; reading notices when they go away
                await client.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            live.leave(client)

    return router


def spec() -> ServiceSpec:
    live = LiveClients()
    return ServiceSpec(
        name="notification",
        metadata=metadata,
        routes=lambda runtime: routes(runtime, live),
        subscriptions=[
            Subscription(ORDER_CREATED, record_notification, after_commit=send_and_push(live))
        ],
    )
