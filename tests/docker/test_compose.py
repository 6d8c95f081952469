"""docker-compose.yml up and through, as a user runs it: every health check passes, an order
placed on the order service's published port is confirmed, two billing replicas share the
orders (each order to one of them only, as their metrics count), and `down` leaves no
container, network or volume behind.

Each run is a compose project of its own, on free host ports (a machine may run Redis or
RabbitMQ on their usual ones); the images are the ones the environment names (CI: the
stand-ins deploy/images/build.sh makes), the pinned ones otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.docker.compose_project import Project, image_for, require_compose_and_images
from tests.polling import eventually

pytestmark = pytest.mark.timeout(900)

BROKER_OF = {"redis-streams": "redis", "rabbitmq": "rabbitmq"}


@pytest.fixture(params=list(BROKER_OF))
def project(request: pytest.FixtureRequest, engine: None) -> Iterator[Project]:
    profile = str(request.param)
    require_compose_and_images(image_for(BROKER_OF[profile]), image_for("postgres"))
    project = Project(profile)
    try:
        yield project
    finally:  # passed or failed: nothing of the project stays
        project.run("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=180)


def counted(metrics: str) -> tuple[int, int]:
    """(handled, duplicates dropped) of order_created, from one instance's /metrics."""
    found = {"orderbus_events_consumed": 0.0, "orderbus_events_duplicate": 0.0}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            name = sample.name.removesuffix("_total")
            if name in found and sample.labels.get("type") == "order_created":
                found[name] += sample.value
    return int(found["orderbus_events_consumed"]), int(found["orderbus_events_duplicate"])


async def test_compose_up_confirms_orders_shared_by_two_billing_replicas(
    project: Project,
) -> None:
    up = project.run(
        "up", "--detach", "--build", "--wait", "--wait-timeout", "240",
        "--scale", "billing=2",
        timeout=600,
    )  # fmt: skip
    assert up.returncode == 0, (up.stdout + up.stderr)[-3_000:]
    order_url = project.url("order", 8000)
    billing = [project.url("billing", 8002, index) for index in (1, 2)]

    async with httpx.AsyncClient(timeout=10) as client:
        placed: list[str] = []

        async def place() -> None:
            body = {"customer_id": f"c{len(placed)}", "items": [{"sku": "CB-005", "quantity": 1}]}
            answer = await client.post(f"{order_url}/orders", json=body)
            assert answer.status_code == 202, answer.text
            placed.append(str(answer.json()["order_id"]))

        async def confirmed(order_id: str) -> bool | None:
            answer = await client.get(f"{order_url}/orders/{order_id}")
            return True if answer.json()["status"] == "confirmed" else None

        await place()
        await eventually(functools.partial(confirmed, placed[0]), within_s=60)

        async def invoiced_by_each_replica() -> dict[str, list[str]] | None:
            """Place another order; once both replicas have invoiced some: who did which."""
            await place()
            page = await client.get(f"{billing[0]}/processed", params={"limit": 1000})
            rows: list[dict[str, Any]] = page.json()["processed"]
            by: dict[str, list[str]] = {}
            for row in rows:
                if row["type"] == "order_created":
                    by.setdefault(row["instance_id"], []).append(row["order_id"])
            return by if len(by) == 2 else None

        by_replica = await eventually(invoiced_by_each_replica, within_s=120)
        for order_id in placed:
            await eventually(functools.partial(confirmed, order_id), within_s=60)
        replicas = {(await client.get(f"{url}/health")).json()["instance"] for url in billing}
        counts = [counted(str((await client.get(f"{url}/metrics")).text)) for url in billing]

    assert set(by_replica) == replicas  # the two replicas, by their containers' hostnames
    # Shared, not copied: each order_created went to one replica only (a copy to both would
    # be a duplicate the other's inbox dropped), and together they handled every order.
    assert [duplicates for _, duplicates in counts] == [0, 0]
    assert all(handled > 0 for handled, _ in counts)
    assert sum(handled for handled, _ in counts) == len(placed)
    down = project.run("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=180)
    assert down.returncode == 0, down.stderr[-2_000:]
    assert project.leftovers() == []
