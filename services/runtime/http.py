"""HTTP pieces every service shares: a body bound, readable 4xx errors, health and metrics."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from opentelemetry import trace
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from services.runtime.settings import ServiceSettings

KEEP_ALIVE_S = 65
"""How long uvicorn keeps an idle connection open. Longer than its clients keep theirs
(httpx 5 s, browsers and load balancers up to 60 s): with uvicorn's default, 5 s, the same as
httpx's, the server can close a connection just as the client sends on it (`ReadError`)."""
WS_MAX_BYTES = 16_384
"""Largest WebSocket frame a server reads (uvicorn's `ws_max_size`, 16 MiB by default): a
larger one closes the connection (1009) before it is read. Clients send a few hundred bytes."""


def server_config(app: ASGIApp, settings: ServiceSettings, port: int) -> uvicorn.Config:
    """How every service instance is served, by `orderbus run` and `orderbus up` alike."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        log_config=None,
        access_log=False,  # services.runtime.access writes each request's line
        lifespan="on",
        timeout_graceful_shutdown=max(1, round(settings.http_drain_s)),
        timeout_keep_alive=KEEP_ALIVE_S,
        ws_max_size=WS_MAX_BYTES,
    )


def error_body(detail: str, errors: list[dict[str, str]]) -> dict[str, Any]:
    """Every 4xx says what was wrong and where: `{"detail", "errors": [{"field", "reason"}]}`."""
    return {"detail": detail, "errors": errors}


def field_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        # A JSON syntax error's location is a character offset, not a field.
        {
            "field": "body" if e["type"] == "json_invalid" else field_name(tuple(e["loc"])),
            "reason": str(e["msg"]),
        }
        for e in exc.errors()[:20]
    ]
    return JSONResponse(error_body("invalid request", errors), status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)


Answer = Callable[[Request], Coroutine[Any, Any, Response]]


class AnsweredRoute(APIRoute):
    """A route whose requests its `answer` takes as they come (`answered_by`): in a service,
    `FrontRoutes` hands them over; routed to (the router included in another app), the
    route itself does."""

    answer: Answer

    def get_route_handler(self) -> Answer:
        return self.answer


def answered_by(answer: Answer) -> type[AnsweredRoute]:
    """A route class whose requests `answer` takes as they come, ahead of the app's exception
    layers and router (`FrontRoutes`) and without FastAPI's per-request work for it
    (resolving the endpoint's parameters, validating and encoding the answer against its
    model). The route is documented as any other: OpenAPI reads its endpoint's signature.
    For the one route asked so often that this work is a large part of its process's
    (`POST /orders`; docs/performance.md has the figures). `answer` reads the request as
    the endpoint declares it, and raises `RequestValidationError` as FastAPI would."""

    return type("AnsweredBy", (AnsweredRoute,), {"answer": staticmethod(answer)})


class FrontRoutes:
    """Answers the requests of a service's `answered_by` routes before the app's exception
    layers and router see them; every other request goes on to the app.

    Innermost of the middlewares, so each such request is still counted and logged
    (`RequestMetrics`, which reads the route's template from `scope["route"]`), held to the
    body limit, and traced in the span FastAPI opened for it (named after the route here,
    as routing would; the request's work hangs straight off that span, without FastAPI's
    endpoint span between). A bad request gets the same 422 as from the router, an
    `HTTPException` the same answer, a body the client did not finish sending a 400; any
    other exception reaches the same 500 handler."""

    def __init__(self, app: ASGIApp, routes: Sequence[AnsweredRoute]) -> None:
        self.app = app
        for route in routes:
            if route.param_convertors:
                raise ValueError(f"{route.path}: an answered route takes no path parameters")
        self.routes = {(m, r.path): r for r in routes for m in r.methods or ()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http":
            route = self.routes.get((scope["method"], _route_path(scope)))
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        span = trace.get_current_span()
        if span.is_recording():
            prefix = str(scope.get("app_root_path", scope.get("root_path", ""))).rstrip("/")
            span.update_name(f"{scope['method']} {prefix}{route.path}")
            span.set_attribute("http.route", prefix + route.path)
        request = Request(scope, receive, send)
        try:
            response = await route.answer(request)
        except RequestValidationError as invalid:
            response = await _validation_error(request, invalid)
        except HTTPException as refused:
            response = await http_exception_handler(request, refused)
        except ClientDisconnect:
            # Gone before its whole body came: the answer is FastAPI's for an unread body,
            # for the metrics and the log (the client is not there to read it).
            response = JSONResponse(
                error_body(
                    "request body not received",
                    [{"field": "body", "reason": "the client went away before sending it all"}],
                ),
                400,
            )
        await response(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path a router matches: the request's, less the root path it was mounted under
    (a root path that is not a whole leading segment is not one)."""
    path: str = scope["path"]
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


def is_json_media_type(content_type: str | None) -> bool:
    """Whether FastAPI would read a body of this type as JSON: `application/json` or
    `application/*+json`, any parameters aside. A body without a type is not JSON."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    main, _, sub = media.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413: by Content-Length before reading, or
    mid-stream for chunked bodies, in which case the application sees the client go away and
    whatever it answers is dropped.

    Not Starlette's own `max_body_size` (its RequestBodyLimitMiddleware): that answers 413 in
    plain text (`Content Too Large`), not the `{"detail", "errors"}` body every other 4xx has,
    and lets a Content-Length that is not a number through to the application."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(send)
            return
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes and not refused:
                refused = True
                await self._too_large(send)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # once we answered 413, the application's answer goes nowhere
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise

    async def _too_large(self, send: Send) -> None:
        body = json.dumps(
            error_body(
                "request body too large",
                [{"field": "body", "reason": f"larger than {self.max_bytes} bytes"}],
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
