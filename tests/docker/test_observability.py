"""The observability overlay's Prometheus, run beside the system: it finds every replica by
DNS (billing scaled to 2), loads the alert rules, and reads the services' metrics.

Grafana and Jaeger are not started: no registry answers here and Debian packages neither, so
only the images the environment holds run (CI: deploy/images/build.sh's Prometheus).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.docker.compose_project import Project, image_for, require_compose_and_images
from tests.polling import eventually

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = "deploy/observability/compose.yml"
PROMETHEUS_IMAGE = yaml.safe_load((ROOT / OVERLAY).read_text())["services"]["prometheus"]["image"]
"""`${ORDERBUS_PROMETHEUS_IMAGE:-<pinned tag>}`, as compose reads it."""
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


async def test_prometheus_scrapes_every_replica_and_loads_the_alert_rules(
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

    down = project.run("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=180)
    assert down.returncode == 0, down.stderr[-2_000:]
    assert project.leftovers() == []
