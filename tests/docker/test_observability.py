"""The observability overlay's Prometheus, run beside the system: it finds every replica by
DNS (billing scaled to 2), loads the alert rules, and reads the services' metrics; under a
minute and a half of orders, every query of the Grafana dashboard's main panels returns data,
and the panels are drawn from it (artifacts/dashboard-panels.png, the README's picture).

Grafana and Jaeger are not started: no registry answers here and Debian packages neither, so
only the images the environment holds run (CI: deploy/images/build.sh's Prometheus).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.browser.chromium import chromium_page, screenshot
from tests.docker.compose_project import Project, image_for, require_compose_and_images
from tests.docker.dashboard_render import page, query_panels
from tests.polling import eventually

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = "deploy/observability/compose.yml"
PROMETHEUS_IMAGE = yaml.safe_load((ROOT / OVERLAY).read_text())["services"]["prometheus"]["image"]
"""`${ORDERBUS_PROMETHEUS_IMAGE:-<pinned tag>}`, as compose reads it."""
DASHBOARD = json.loads((ROOT / "deploy/observability/grafana/orderbus.json").read_text())
SCRAPE_INTERVAL_S = float(
    yaml.safe_load((ROOT / "deploy/observability/prometheus.yml").read_text())["global"][
        "scrape_interval"
    ].removesuffix("s")
)
LOAD_S = 90
ORDERS_PER_S = 20
WITH_DATA = {
    "Events handled per second, per service",
    "Events published per second, per service",
    "Handler latency p50 / p99",
    "HTTP requests per second, per route and status",
    "HTTP latency p99, per route",
}
"""Panels that must show lines after the load (the others show trouble: none here)."""
ALERTS = {
    rule["alert"]
    for group in yaml.safe_load((ROOT / "deploy/observability/alerts.yml").read_text())["groups"]
    for rule in group["rules"]
}


@pytest.fixture
def project(engine: None) -> Iterator[Project]:
    variable, pinned = re.fullmatch(r"\$\{(\w+):-(.+)\}", PROMETHEUS_IMAGE).groups()  # type: ignore[union-attr]
    prometheus = os.environ.get(variable) or pinned
    require_compose_and_images(image_for("redis"), image_for("postgres"), prometheus)
    project = Project("redis-streams", files=("docker-compose.yml", OVERLAY))
    try:
        yield project
    finally:  # passed or failed: nothing of the project stays
        project.run("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=180)


async def test_prometheus_scrapes_every_replica_loads_the_rules_and_feeds_the_dashboard(
    project: Project,
) -> None:
    up = project.run(
        "up", "--detach", "--build", "--wait", "--wait-timeout", "240", "--scale", "billing=2",
        "order", "inventory", "billing", "notification", "prometheus",
        timeout=600,
    )  # fmt: skip
    assert up.returncode == 0, (up.stdout + up.stderr)[-3_000:]
    prometheus = f"http://127.0.0.1:{project.env['PROMETHEUS_HOST_PORT']}"
    order_url = project.url("order", 8000)

    async with httpx.AsyncClient(timeout=10) as client:
        body = {"customer_id": "c1", "items": [{"sku": "CB-005", "quantity": 1}]}
        placed = await client.post(f"{order_url}/orders", json=body)
        assert placed.status_code == 202, placed.text

        async def every_replica_up() -> list[dict[str, Any]] | None:
            answer = await client.get(f"{prometheus}/api/v1/targets")
            if answer.status_code != 200:
                return None
            targets = [t for t in answer.json()["data"]["activeTargets"] if t["health"] == "up"]
            return targets if len(targets) == 5 else None

        targets = await eventually(every_replica_up, within_s=120)
        ports = sorted(target["labels"]["instance"].rsplit(":", 1)[1] for target in targets)
        assert ports == ["8000", "8001", "8002", "8002", "8003"]  # billing twice

        rules = (await client.get(f"{prometheus}/api/v1/rules")).json()["data"]["groups"]
        assert {rule["name"] for group in rules for rule in group["rules"]} == ALERTS

        async def billing_handled_the_order() -> float | None:
            query = 'sum(orderbus_events_consumed_total{service="billing", type="order_created"})'
            answer = await client.get(f"{prometheus}/api/v1/query", params={"query": query})
            result = answer.json()["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        assert await eventually(billing_handled_the_order, within_s=120) == 1.0

        started = time.time()
        placed_ok = await _place_orders(client, order_url)
        assert placed_ok > 0.9 * LOAD_S * ORDERS_PER_S

        async def every_order_scraped_as_notified() -> float | None:
            # The last scrapes of the load are in: notification's count covers every order.
            query = (
                'sum(orderbus_events_consumed_total{service="notification", type="order_created"})'
            )
            answer = await client.get(f"{prometheus}/api/v1/query", params={"query": query})
            result = answer.json()["data"]["result"]
            seen = float(result[0]["value"][1]) if result else 0.0
            return seen if seen >= placed_ok + 1 else None  # +1: the first order above

        await eventually(every_order_scraped_as_notified, within_s=120)
        panels = await query_panels(
            client, prometheus, DASHBOARD, started, time.time(), SCRAPE_INTERVAL_S
        )
        empty = sorted(p.title for p in panels if p.title in WITH_DATA and not p.series)
        assert empty == [], "dashboard queries with no data"
        short = [
            p.title for p in panels for s in p.series if p.title in WITH_DATA and len(s.points) < 2
        ]
        assert short == []
        title = f"orderbus, rendered from Prometheus: redis-streams, billing x2, {placed_ok} orders"
        assert await asyncio.to_thread(_draw, page(panels, title, started, time.time())) == []

    down = project.run("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=180)
    assert down.returncode == 0, down.stderr[-2_000:]
    assert project.leftovers() == []


def _draw(panels_page: str) -> list[str]:
    """The page in Chromium, its screenshot in artifacts/; the page's errors."""
    with chromium_page(width=24 * 50 + 16, height=900) as (browser, errors):
        browser.set_content(panels_page)
        screenshot(browser, "dashboard-panels.png")
        return errors


async def _place_orders(client: httpx.AsyncClient, order_url: str) -> int:
    """ORDERS_PER_S orders a second for LOAD_S seconds, from 20 customers; how many were taken."""
    accepted = 0

    async def one(n: int) -> None:
        nonlocal accepted
        body = {"customer_id": f"load{n % 20}", "items": [{"sku": "CB-005", "quantity": 1}]}
        answer = await client.post(f"{order_url}/orders", json=body)
        accepted += answer.status_code == 202

    tick = time.monotonic()
    sending = []
    for second in range(LOAD_S):
        sending += [
            asyncio.create_task(one(second * ORDERS_PER_S + k)) for k in range(ORDERS_PER_S)
        ]
        tick += 1
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
    await asyncio.gather(*sending)
    return accepted
