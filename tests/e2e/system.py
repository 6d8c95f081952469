"""Run the whole system as a user does (`orderbus up`) and talk to it over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bus import names
from contracts import INSTANCE_ACTIVITY, NOTIFICATION_PUSHED, ORDER_CREATED, TOPICS
from services.runtime.settings import SERVICES
from tests.brokers import free_port
from tests.integration.native import remove_topology
from tests.polling import eventually


@dataclass(frozen=True)
class System:
    urls: dict[str, str]
    """instance id -> base URL, as `orderbus up` printed them."""
    process: subprocess.Popen[str]
    log: Path

    def url(self, instance: str) -> str:
        return self.urls[instance]

    def instances(self, service: str) -> list[str]:
        return sorted(i for i in self.urls if i.startswith(f"{service}-"))


def read_listing(process: subprocess.Popen[str], log: Path) -> dict[str, str]:
    """instance id -> URL, from the JSON line `orderbus up --json` prints once every instance
    is ready (its start-up bounds how long that takes)."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("{"):
            return {i["instance"]: i["url"] for i in json.loads(line)["instances"]}
    raise AssertionError(f"orderbus up printed no listing; its log:\n{log.read_text()[-4000:]}")


ADMIN_TOKEN = "e2e-admin-token-0123456789"
"""Every system's admin token unless the environment has one: a test shows it (WebSocket
`auth`, admin calls)."""


@contextmanager
def orderbus_up(
    backend: str, url: str, data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[System]:
    """`orderbus up` with `args`, its variables and `env`; SIGINT (and waited for) at the end."""
    ports = {
        f"{s.upper()}_PORT": str(free_port())
        for s in ("order", "inventory", "billing", "notification")
    }
    variables = (
        os.environ
        | ports
        | {
            "BUS_BACKEND": backend,
            "BUS_URL": url,
            "ORDERBUS_DATA_DIR": str(data_dir),
            "ORDERBUS_ADMIN_TOKEN": os.environ.get("ORDERBUS_ADMIN_TOKEN", ADMIN_TOKEN),
            "PYTHONUNBUFFERED": "1",
            # These tests place orders as fast as they can, from a handful of customer ids.
            "ORDERBUS_RATE_LIMIT_PER_MINUTE": "0",
            "ORDERBUS_RATE_LIMIT_PER_CLIENT_PER_MINUTE": "0",
            # The dashboard's feed only where a test asks for it: on Tansu, a test broker that
            # never expires sessions, its heartbeats made a later run's group joins wait
            # (see the lead's note); the browser tests turn it on.
            "ORDERBUS_ACTIVITY": os.environ.get("ORDERBUS_ACTIVITY", "false"),
        }
        | (env or {})
    )
    variables.pop("INSTANCE_ID", None)
    log = data_dir / "orderbus-up.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "orderbus.cli", "up", "--json", "--backend", backend, *args],
            env=variables,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        yield System(read_listing(process, log), process, log)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


LIVE_TOPICS = [NOTIFICATION_PUSHED, INSTANCE_ACTIVITY]
"""Topics each notification instance receives under a group of its own."""


async def remove_system_topology(backend: str, url: str, groups: list[str]) -> None:
    """Delete what `orderbus up` declares on the broker: every business topic with every
    service's group (and `groups`), and the live topics with the notification instances' own
    groups (up to four replicas)."""
    await remove_topology(backend, url, TOPICS, sorted({*groups, *SERVICES}))
    for topic in LIVE_TOPICS:
        live_groups = [names.instance_group(f"notification-{n}", topic) for n in range(1, 5)]
        await remove_topology(backend, url, [topic], live_groups)


# -- placing orders and checking what became of them -------------------------------------

SUBSCRIBERS = ["inventory", "billing", "notification"]


async def place_orders(
    client: httpx.AsyncClient, system: System, n: int, placed: list[str]
) -> None:
    """Place `n` orders, 8 at a time, appending each accepted order id to `placed`."""
    gate = asyncio.Semaphore(8)

    async def place(i: int) -> None:
        body = {"customer_id": f"c{i % 13}", "items": [{"sku": "CB-005", "quantity": 1}]}
        async with gate:
            response = await client.post(f"{system.url('order-1')}/orders", json=body)
        assert response.status_code == 202, response.text
        placed.append(str(response.json()["order_id"]))

    await asyncio.gather(*(place(i) for i in range(n)))


async def processed_orders(client: httpx.AsyncClient, url: str) -> list[str]:
    """The order id of every `order_created` a service has processed, page by page (its
    other events, such as the saga's outcomes, are not what this test counts)."""
    rows: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        response = await client.get(f"{url}/processed", params={"limit": 1000, "offset": offset})
        response.raise_for_status()
        page: list[dict[str, Any]] = response.json()["processed"]
        offset += len(page)
        # Newest first: a row processed while paging pushes the others down, so the next
        # page repeats the last rows of this one. Keyed by event id, a repeat counts once
        # (and an order with two order_created events still shows twice).
        rows |= {row["event_id"]: row for row in page}
        if len(page) < 1000:
            return [row["order_id"] for row in rows.values() if row["type"] == ORDER_CREATED]


async def all_processed(client: httpx.AsyncClient, system: System, orders: set[str]) -> None:
    for service in SUBSCRIBERS:
        url = system.url(f"{service}-1")

        async def complete(url: str = url) -> list[str] | None:
            seen = await processed_orders(client, url)
            return seen if orders <= set(seen) else None

        seen = await eventually(complete, within_s=300)
        assert sorted(o for o in seen if o in orders) == sorted(orders), f"{service}: once each"


async def all_decided(client: httpx.AsyncClient, system: System, orders: set[str]) -> None:
    """Every one of `orders` confirmed or rejected: the saga reached its end for each."""

    async def statuses() -> dict[str, str] | None:
        found: dict[str, str] = {}
        offset = 0
        while True:
            answer = await client.get(
                f"{system.url('order-1')}/orders", params={"limit": 200, "offset": offset}
            )
            answer.raise_for_status()
            page: list[dict[str, Any]] = answer.json()["orders"]
            found |= {o["order_id"]: o["status"] for o in page if o["order_id"] in orders}
            offset += len(page)
            if len(page) < 200:
                break
        pending = [o for o in orders if found.get(o) not in ("confirmed", "rejected")]
        return found if not pending else None

    await eventually(statuses, within_s=300)
