"""docker-compose.yml up and through, as a user runs it: every health check passes, an order
placed on the order service's published port is confirmed, two billing replicas share the
orders (each once), and `down` leaves no container, network or volume behind.

Each run is a compose project of its own, on free host ports (a machine may run Redis or
RabbitMQ on their usual ones); the images are the ones the environment names (CI: the
stand-ins deploy/images/build.sh makes), the pinned ones otherwise.
"""

from __future__ import annotations

import functools
import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.brokers import free_port
from tests.docker.conftest import DEFAULT_PYTHON_IMAGE, docker, unavailable
from tests.polling import eventually

pytestmark = pytest.mark.timeout(900)

BROKER_OF = {"redis-streams": "redis", "rabbitmq": "rabbitmq"}
PINNED = {
    "redis": "redis:7.4.2-alpine",
    "rabbitmq": "rabbitmq:3.13.7-management-alpine",
    "postgres": "postgres:17.2-alpine",
}
HOST_PORTS = [
    "ORDER_HOST_PORT",
    "REDIS_HOST_PORT",
    "RABBITMQ_HOST_PORT",
    "RABBITMQ_UI_HOST_PORT",
    "KAFKA_HOST_PORT",
    "NATS_HOST_PORT",
    "NATS_MONITOR_HOST_PORT",
]


class Project:
    """One compose project: `run(...)` is `docker compose ...` with its variables."""

    def __init__(self, profile: str) -> None:
        self.name = f"orderbus-test-{uuid.uuid4().hex[:8]}"
        self.env = os.environ | {
            "COMPOSE_PROFILES": profile,
            "COMPOSE_PROJECT_NAME": self.name,
            **{variable: str(free_port()) for variable in HOST_PORTS},
        }

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "compose", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def url(self, service: str, port: int, index: int = 1) -> str:
        published = self.run("port", "--index", str(index), service, str(port))
        assert published.returncode == 0, published.stderr
        return f"http://{published.stdout.strip()}"

    def leftovers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.name}"
        found: list[str] = []
        for kind in ("container", "network", "volume"):
            listed = docker(
                kind, "ls", "-q", *(["-a"] if kind == "container" else []), "--filter", label
            )
            found += [f"{kind} {item}" for item in listed.stdout.split()]
        return found


def image_for(kind: str) -> str:
    return os.environ.get(f"ORDERBUS_{kind.upper()}_IMAGE") or PINNED[kind]


@pytest.fixture(params=list(BROKER_OF))
def project(request: pytest.FixtureRequest, engine: None) -> Iterator[Project]:
    profile = str(request.param)
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        unavailable("no `docker compose` (the Compose plugin)")
    needed = [os.environ.get("PYTHON_IMAGE") or DEFAULT_PYTHON_IMAGE]
    needed += [image_for(BROKER_OF[profile]), image_for("postgres")]
    for name in needed:
        if docker("image", "inspect", name).returncode != 0:
            unavailable(f"the engine holds no {name} (deploy/images/build.sh makes a stand-in)")
    project = Project(profile)
    try:
        yield project
    finally:  # passed or failed: nothing of the project stays
        project.run("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=180)


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

    assert set(by_replica) == replicas  # the two replicas, by their containers' hostnames
    handled = [order for orders in by_replica.values() for order in orders]
    assert sorted(handled) == sorted(set(handled)), "an order invoiced twice"
    down = project.run("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=180)
    assert down.returncode == 0, down.stderr[-2_000:]
    assert project.leftovers() == []
