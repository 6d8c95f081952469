"""Who may read what over `/ws`: no page of another site, nobody everything, the activity only
with the admin token. Starlette's test client speaks the WebSocket protocol to the app."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
import websockets
from pydantic import SecretStr
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from orderbus.specs import create_app
from services.notification import routes as notification_routes
from services.notification.live import Client
from services.notification.settings import NotificationSettings
from services.runtime.http import WS_MAX_BYTES, server_config
from services.runtime.settings import ServiceSettings
from tests.brokers import free_port
from tests.polling import eventually

TOKEN = "ws-admin-token-0123456789"


@pytest.fixture
def notification(settings: ServiceSettings) -> Iterator[TestClient]:
    configured = settings.model_copy(update={"admin_token": SecretStr(TOKEN)})
    own = NotificationSettings(ws_allowed_origins="https://shop.example")
    with TestClient(create_app("notification", configured, own=own)) as client:
        yield client


def said(socket: Any, message: dict[str, Any]) -> dict[str, Any]:
    socket.send_json(message)
    answer: dict[str, Any] = socket.receive_json()
    return answer


def test_a_page_of_another_site_cannot_open_the_socket(notification: TestClient) -> None:
    evil = {"origin": "https://evil.example"}
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        notification.websocket_connect("/ws", headers=evil),
    ):
        pass
    assert refused.value.code == 1008
    for origin in ("http://testserver", "https://shop.example"):
        with notification.websocket_connect("/ws", headers={"origin": origin}) as socket:
            assert socket.receive_json()["type"] == "hello"
    with notification.websocket_connect("/ws") as socket:  # not a browser: no Origin
        assert socket.receive_json()["type"] == "hello"


def test_everything_and_the_activity_need_the_admin_token(notification: TestClient) -> None:
    with notification.websocket_connect("/ws") as socket:
        socket.receive_json()  # hello
        assert said(socket, {"type": "subscribe", "all": True}) == {
            "type": "error",
            "field": "all",
            "reason": "every customer's notifications need the admin token",
        }
        refused = said(socket, {"type": "feeds", "feeds": ["activity"]})
        assert (refused["type"], refused["field"]) == ("error", "feeds")
        wrong = said(socket, {"type": "auth", "token": "not-the-token-0123456789"})
        assert (wrong["type"], wrong["field"]) == ("error", "token")
        assert "not-the-token" not in wrong["reason"]
        # What a customer's page does: name the customer it follows.
        assert said(socket, {"type": "subscribe", "customer_id": "alice"})["keys"] == [
            "customer:alice"
        ]

        assert said(socket, {"type": "auth", "token": TOKEN}) == {"type": "authorized"}
        assert said(socket, {"type": "subscribe", "all": True})["keys"] == ["*", "customer:alice"]
        assert said(socket, {"type": "feeds", "feeds": ["activity"]})["feeds"] == ["activity"]


def test_a_new_client_follows_nothing_until_it_names_something() -> None:
    assert not Client(socket=None).wants("notifications", {"customer:alice"})  # type: ignore[arg-type]


def test_a_binary_frame_is_answered_with_a_close_code(notification: TestClient) -> None:
    with notification.websocket_connect("/ws") as socket:
        socket.receive_json()  # hello
        socket.send_bytes(b"\x00\x01")
        closed = socket.receive()
    assert (closed["type"], closed["code"]) == ("websocket.close", 1003)


def test_a_silent_client_is_closed(
    notification: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notification_routes, "IDLE_S", 0.2)
    with notification.websocket_connect("/ws") as socket:
        socket.receive_json()  # hello
        closed = socket.receive()  # nothing sent: the server gives up on it
    assert (closed["type"], closed["code"]) == ("websocket.close", 1001)


async def test_a_frame_over_the_limit_is_refused_by_the_server(settings: ServiceSettings) -> None:
    """The server as `orderbus run` and `up` configure it, over a real socket: the frame is
    refused (1009) before it is read, and a frame within the limit is answered."""
    port = free_port()
    configured = settings.model_copy(update={"host": "127.0.0.1"})
    server = uvicorn.Server(server_config(create_app("notification", configured), configured, port))
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: _now(True if server.started else None), within_s=20)
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await ws.recv())["type"] == "pong"
            await ws.send(json.dumps({"type": "ping", "pad": "x" * WS_MAX_BYTES}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
    finally:
        server.should_exit = True
        await serving


async def _now(value: bool | None) -> bool | None:
    return value
