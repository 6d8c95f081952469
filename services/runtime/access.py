"""Every HTTP request of a service, counted, timed and logged once, like the other lines.

Uvicorn's own access log is off (`services.runtime.http.server_config`): its line is a
preformatted string with none of the fields a JSON log is searched by. This middleware writes
one line per request (method, path, status, duration), at DEBUG for the probes a load balancer
and Prometheus send every few seconds, and counts each request under its route's template
(`/orders/{order_id}`, never the id itself), so the number of series stays bounded whatever
clients ask for. The query string is never logged: it may carry a token.
"""

from __future__ import annotations

import contextlib
import logging
import time

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.runtime.metrics import Metrics

log = logging.getLogger("orderbus.access")

PROBES = frozenset({"/health", "/ready", "/metrics"})
"""Asked every few seconds by machines: their lines are DEBUG, not INFO."""
PATH_MAX_CHARS = 200
"""A path is the client's to choose: a longer one is cut in the log line."""
UNMATCHED = "unmatched"


def route_template(scope: Scope, root_path: str = "") -> str:
    """The template of the route that took the request: the route's own when it spells the
    whole path, else the path with each path parameter's segment named (a route of a router
    included in another knows only its own router's prefix); for a mounted app (the docs'
    files), its mount point and `{path}`. `root_path` is the scope's before routing."""
    route = scope.get("route")
    if not isinstance(route, BaseRoute):
        mounted = str(scope.get("root_path", ""))
        if mounted != root_path and mounted.startswith(root_path):
            return f"{mounted[len(root_path) :]}/{{path}}"
        return UNMATCHED
    path: str = scope["path"]
    params = {name: str(value) for name, value in scope.get("path_params", {}).items()}
    template = getattr(route, "path_format", None)
    if isinstance(template, str):
        with contextlib.suppress(KeyError, IndexError, ValueError):
            if template.format(**params) == path:
                return template
    names = {value: name for name, value in params.items()}
    return "/".join(f"{{{names[s]}}}" if s in names else s for s in path.split("/"))


class RequestMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root_path = str(scope.get("root_path", ""))
        status = 500  # what the client gets if the application raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            seconds = time.perf_counter() - started
            method, path = scope["method"], scope["path"]
            self.metrics.observe_request(method, route_template(scope, root_path), status, seconds)
            log.log(
                logging.DEBUG if path in PROBES else logging.INFO,
                "%s %s %d %.1f ms",
                method,
                path[:PATH_MAX_CHARS],
                status,
                seconds * 1000,
                extra={
                    "http_method": method,
                    "http_path": path[:PATH_MAX_CHARS],
                    "http_status": status,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )
