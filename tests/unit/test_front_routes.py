"""`FrontRoutes`: an `answered_by` route's requests are answered before the app sees them."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from services.runtime.http import AnsweredRoute, FrontRoutes, answered_by


async def never_reached(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError(f"the app got {scope['method']} {scope['path']}")


async def reached(scope: Scope, receive: Receive, send: Send) -> None:
    await Response("from the app", 200)(scope, receive, send)


def route(answer: Any, path: str = "/orders") -> AnsweredRoute:
    router = APIRouter()

    async def documented() -> None: ...

    router.add_api_route(
        path, documented, methods=["POST"], route_class_override=answered_by(answer)
    )
    [made] = router.routes
    assert isinstance(made, AnsweredRoute)
    return made


async def call(app: Any, method: str, path: str, root_path: str = "") -> list[Message]:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": root_path,
        "headers": [],
        "query_string": b"",
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def accepted(_: Request) -> Response:
    return Response(b"{}", 202, media_type="application/json")


async def test_an_answered_route_never_reaches_the_app() -> None:
    front = FrontRoutes(never_reached, [route(accepted)])
    [start, _] = await call(front, "POST", "/orders")
    assert start["status"] == 202


@pytest.mark.parametrize(
    ("method", "path", "root_path"),
    [("GET", "/orders", ""), ("POST", "/orders/1", ""), ("POST", "/ordersx", "")],
)
async def test_other_requests_go_on_to_the_app(method: str, path: str, root_path: str) -> None:
    front = FrontRoutes(reached, [route(accepted)])
    [start, body] = await call(front, method, path, root_path)
    assert start["status"] == 200
    assert body["body"] == b"from the app"


async def test_a_root_path_is_left_out_of_the_match() -> None:
    front = FrontRoutes(never_reached, [route(accepted)])
    [start, _] = await call(front, "POST", "/api/orders", root_path="/api")
    assert start["status"] == 202


async def test_errors_are_answered_as_the_router_would() -> None:
    async def refused(_: Request) -> Response:
        raise HTTPException(409, detail="taken")

    async def invalid(_: Request) -> Response:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required"}]
        )

    [start, _] = await call(FrontRoutes(never_reached, [route(refused)]), "POST", "/orders")
    assert start["status"] == 409
    [start, body] = await call(FrontRoutes(never_reached, [route(invalid)]), "POST", "/orders")
    assert start["status"] == 422
    assert b'"field":"body"' in body["body"]


async def test_a_client_gone_before_its_body_is_answered_400() -> None:
    async def gone(_: Request) -> Response:
        raise ClientDisconnect

    [start, body] = await call(FrontRoutes(never_reached, [route(gone)]), "POST", "/orders")
    assert start["status"] == 400
    assert b"went away" in body["body"]


def test_a_route_with_path_parameters_is_refused() -> None:
    with pytest.raises(ValueError, match="no path parameters"):
        FrontRoutes(never_reached, [route(accepted, "/orders/{order_id}")])
