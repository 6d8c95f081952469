"""`GET /asyncapi.json` and `GET /asyncapi`: the system's event interface for the running
backend, as committed in `contracts/asyncapi/<backend>.json` (generated from every service's
spec by `python -m orderbus.asyncapi`). Served from that file, so the serving service needs
none of the other services' code; the page is plain HTML, no script, no network."""

from __future__ import annotations

import functools
import html
import json
from importlib.resources import files
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse

DEFAULT = "redis-streams"
"""The document served on `memory`, which has no wire protocol of its own."""


@functools.cache
def committed(backend: str) -> dict[str, Any]:
    """The committed document of a backend with a wire protocol."""
    document: dict[str, Any] = json.loads(
        (files("contracts") / "asyncapi" / f"{backend}.json").read_text()
    )
    return document


def html_page(doc: dict[str, Any], backend: str) -> str:
    """Channels, operations and messages as plain HTML (readable offline, no JavaScript)."""
    e = html.escape
    rows = []
    for name, op in sorted(doc.get("operations", {}).items()):
        channel = doc["channels"][op["channel"]["$ref"].rsplit("/", 1)[-1]]
        bindings = json.dumps(channel.get("bindings", {}), sort_keys=True)
        rows.append(
            f"<tr><td>{e(op['action'])}</td><td><code>{e(channel.get('address', ''))}</code>"
            f"</td><td>{e(channel.get('description', ''))}</td>"
            f"<td><code>{e(bindings)}</code></td><td>{e(name)}</td></tr>"
        )
    schemas = "".join(
        f"<h3 id='{e(name)}'>{e(name)}</h3><pre>{e(json.dumps(schema, indent=2))}</pre>"
        for name, schema in sorted(doc.get("components", {}).get("schemas", {}).items())
    )
    servers = "".join(
        f"<li>{e(name)}: <code>{e(s.get('protocol', ''))}://{e(s.get('host', ''))}"
        f"{e(s.get('pathname', ''))}</code></li>"
        for name, s in doc.get("servers", {}).items()
    )
    info = doc.get("info", {})
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{e(info.get('title', ''))} AsyncAPI ({e(backend)})</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;"
        "padding:.3em;vertical-align:top}table{border-collapse:collapse}"
        "pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head><body>"
        f"<h1>{e(info.get('title', ''))} {e(info.get('version', ''))}: AsyncAPI "
        f"{e(doc.get('asyncapi', ''))}, backend {e(backend)}</h1>"
        f"<p>{e(info.get('description', ''))}</p><p><a href='asyncapi.json'>asyncapi.json</a>"
        f"</p><h2>Servers</h2><ul>{servers}</ul><h2>Operations</h2><table><tr><th>action</th>"
        "<th>address</th><th>description</th><th>bindings</th><th>operation</th></tr>"
        f"{''.join(rows)}</table><h2>Schemas</h2>{schemas}</body></html>"
    )


def asyncapi_routes(backend: str) -> APIRouter:
    routes = APIRouter()
    shown = backend if backend != "memory" else DEFAULT

    @routes.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi_json() -> JSONResponse:
        return JSONResponse(committed(shown))

    @routes.get("/asyncapi", include_in_schema=False)
    async def asyncapi_html() -> HTMLResponse:
        return HTMLResponse(html_page(committed(shown), shown))

    return routes
