"""Every request is counted under its route's template and logged once, probes at DEBUG."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import Running
from tests.api.test_order_api import GOOD, place


async def requests_counted(
    client: httpx.AsyncClient, service: str = "order"
) -> dict[tuple[str, str, str], float]:
    text = (await client.get("/metrics")).text
    counted = {}
    for family in text_string_to_metric_families(text):
        if family.name == "orderbus_http_requests":
            for sample in family.samples:
                if sample.name == "orderbus_http_requests_total":
                    labels = sample.labels
                    key = (labels["method"], labels["route"], labels["status"])
                    counted[key] = sample.value
                    assert labels["service"] == service
    return counted


async def test_requests_are_counted_by_route_template_method_and_status(
    order_client: httpx.AsyncClient,
) -> None:
    assert (await place(order_client)).status_code == 202
    asked = [str(uuid.uuid4()) for _ in range(2)]
    for order_id in asked:
        assert (await order_client.get(f"/orders/{order_id}")).status_code == 404
    assert (await order_client.get("/no/such/page")).status_code == 404
    assert (await order_client.request("BREW", "/orders")).status_code == 405
    too_big = await order_client.post("/orders", content=b"x" * 2_000_000)
    assert too_big.status_code == 413

    counted = await requests_counted(order_client)
    assert counted[("POST", "/orders", "202")] == 1
    # One series for every order id: the template, never the id.
    assert counted[("GET", "/orders/{order_id}", "404")] == 2
    assert counted[("GET", "unmatched", "404")] == 1
    assert counted[("other", "/orders", "405")] == 1
    # Refused by its Content-Length before any route saw it.
    assert counted[("POST", "unmatched", "413")] == 1
    assert not any(order_id in route for order_id in asked for _, route, _ in counted)


async def test_one_line_per_request_with_its_fields_and_probes_at_debug(
    order_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="orderbus.access")
    assert (await order_client.post("/orders?token=s3cret", json=GOOD)).status_code == 202
    assert (await order_client.get("/ready")).status_code == 200

    lines = [r for r in caplog.records if r.name == "orderbus.access"]
    assert [(r.levelno, r.http_method, r.http_path, r.http_status) for r in lines] == [  # type: ignore[attr-defined]
        (logging.INFO, "POST", "/orders", 202),
        (logging.DEBUG, "GET", "/ready", 200),
    ]
    assert all(r.duration_ms >= 0 for r in lines)  # type: ignore[attr-defined]
    assert not any("s3cret" in r.getMessage() for r in caplog.records)


async def test_a_route_of_a_nested_router_is_counted_under_its_whole_path(
    running: Running,
) -> None:
    async with running("notification") as client:
        # The dashboard's admin routes: a router (/api) inside the dashboard's (/dashboard).
        refused = await client.post("/dashboard/api/pause", json={})
        assert refused.status_code in (401, 403)
        assert (await client.get("/dashboard/app.js")).status_code == 200
        assert (await client.get("/docs-assets/swagger-ui.css")).status_code == 200
        counted = await requests_counted(client, "notification")
    routes = {route for _, route, _ in counted}
    assert "/dashboard/api/pause" in routes
    assert "/dashboard/{name}" in routes
    assert "/docs-assets/{path}" in routes
    assert not [r for r in routes if r.startswith("/api/")]
