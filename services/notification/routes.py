"""Notification HTTP API: `GET /notifications?order_id=`, the WebSocket `/ws`, and the operator
console (`services.console`: `/dashboard`), whose feed rides `/ws`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from pydantic import SecretStr, ValidationError
from sqlalchemy import select

from services.console.dashboard import Dashboard, dashboard_routes
from services.notification.live import Client
from services.notification.mail import Mailer
from services.notification.protocol import (
    IDLE_S,
    MAX_MESSAGE_CHARS,
    Auth,
    Feeds,
    Incoming,
    Ping,
    Subscribe,
)
from services.notification.relay import LiveRelay
from services.notification.settings import NotificationSettings
from services.notification.store import notifications
from services.runtime.admin import token_matches
from services.runtime.database import reading
from services.runtime.http import field_name
from services.runtime.service import Runtime


def routes(
    runtime: Runtime,
    own: NotificationSettings,
    relay: LiveRelay,
    dashboard: Dashboard,
    mailer: Mailer,
) -> APIRouter:
    router = APIRouter()
    relay.bind(runtime)
    mailer.bind(runtime)
    live = relay.clients
    runtime.activity.extra["clients"] = lambda: len(live)
    router.include_router(dashboard_routes(runtime, dashboard))

    @router.get("/notifications")
    async def list_notifications(
        order_id: str | None = Query(None, max_length=64),
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        query = select(notifications).order_by(notifications.c.created_at.desc()).limit(limit)
        if order_id is not None:
            query = query.where(notifications.c.order_id == order_id)
        async with reading(runtime.engine) as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    @router.get("/presence")
    async def presence() -> dict[str, Any]:
        return {
            "instance": runtime.instance,
            "clients": len(live),
            "online": live.online(),
            "pushes_dropped": relay.dropped,
            "pushes_unheard": relay.unheard,
            "listened_to": live.listened_to(),
        }

    allowed_origins = {o.strip().rstrip("/") for o in own.ws_allowed_origins.split(",")}

    @router.websocket("/ws")
    async def websocket(socket: WebSocket) -> None:
        origin = socket.headers.get("origin")
        if origin is not None and not _same_site(
            origin, socket.headers.get("host"), allowed_origins
        ):
            # Before accept: the handshake is refused (403). A page of another site would
            # otherwise read the feed with its visitor's browser (cross-site WebSocket
            # hijacking); clients that are not browsers send no Origin.
            await socket.close(code=1008)
            return
        await socket.accept()
        client = live.admit(socket)
        if client is None:
            await socket.close(code=1013, reason="too many clients")
            return
        runtime.activity.wake()  # the peers publish pushes only while someone listens
        try:
            await socket.send_json({"type": "hello", "instance": runtime.instance})
            while True:
                try:
                    async with asyncio.timeout(IDLE_S):
                        frame = await socket.receive()
                except TimeoutError:
                    await socket.close(code=1001, reason="idle")  # it pings when alive
                    return
                if frame["type"] == "websocket.disconnect":
                    return
                if frame.get("text") is None:
                    await socket.close(code=1003, reason="text frames only")
                    return
                await _answer(client, frame["text"], runtime.settings.admin_token)
        except WebSocketDisconnect:
            pass
        finally:
            live.leave(client)

    return router


def _same_site(origin: str, host: str | None, allowed: set[str]) -> bool:
    """Whether a page of `origin` may open this socket: the service's own origin (the host
    the browser connected to), or one configured."""
    origin = origin.rstrip("/")
    if origin in allowed:
        return True
    return host is not None and origin in (f"http://{host}", f"https://{host}")


async def _answer(client: Client, text: str, token: SecretStr | None) -> None:
    """Apply one client message and answer it."""
    client.last_seen = time.monotonic()
    if len(text) > MAX_MESSAGE_CHARS:
        await _error(client, "body", f"longer than {MAX_MESSAGE_CHARS} characters")
        return
    try:
        message = Incoming.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        await _error(client, field_name(tuple(first["loc"])), str(first["msg"]))
        return
    if isinstance(message, Auth):
        if not token_matches(token, message.token):
            # Never echoes what was presented: it may be a near-miss of the token.
            await _error(client, "token", "not the admin token (or none is configured)")
            return
        client.admin = True
        await client.socket.send_json({"type": "authorized"})
    elif isinstance(message, Subscribe):
        kind, value = message.key()
        try:
            client.subscribe(kind, value)
        except PermissionError as exc:
            await _error(client, "all", str(exc))
            return
        except ValueError as exc:
            await _error(client, "type", str(exc))
            return
        await client.socket.send_json({"type": "subscribed", "keys": sorted(client.keys)})
    elif isinstance(message, Feeds):
        if "activity" in message.feeds and token is not None and not client.admin:
            await _error(client, "feeds", "the activity feed needs the admin token (auth first)")
            return
        client.feeds = set(message.feeds)
        await client.socket.send_json({"type": "subscribed", "feeds": sorted(client.feeds)})
    elif isinstance(message, Ping):
        client.client_id = message.client_id or client.client_id
        await client.socket.send_json({"type": "pong"})


async def _error(client: Client, field: str, reason: str) -> None:
    await client.socket.send_json({"type": "error", "field": field, "reason": reason})
