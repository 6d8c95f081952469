"""The whole system on every backend: real processes started by `orderbus up`, real HTTP.

50 orders; every order reaches inventory, billing and notification with exactly one effect.
With two billing replicas, competing backends split the work between them, while on Redis
pub/sub both replicas get every event (`deliveries: 2`) and the inbox keeps it to one invoice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from bus import backend_info
from contracts import ORDER_CREATED
from tests.e2e.system import ADMIN_TOKEN, System, orderbus_up, remove_system_topology
from tests.polling import eventually

pytestmark = pytest.mark.timeout(300)

GROUPS = ["inventory", "billing", "notification"]


@pytest.fixture
async def system(backend: str, backend_url: str, tmp_path: Path) -> AsyncIterator[System]:
    # The physical names are the real ones: start from no topology and leave none behind.
    await remove_system_topology(backend, backend_url, GROUPS)
    with orderbus_up(backend, backend_url, tmp_path, "--replicas", "billing=2") as running:
        yield running
    assert running.process.returncode == 0, running.log.read_text()[-4000:]
    await remove_system_topology(backend, backend_url, GROUPS)


async def processed(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    response = await client.get(f"{url}/processed", params={"limit": 1000})
    response.raise_for_status()
    rows: list[dict[str, Any]] = response.json()["processed"]
    return rows


async def test_orders_reach_every_service_once_in_effect(backend: str, system: System) -> None:
    caps = backend_info(backend).capabilities
    async with httpx.AsyncClient(timeout=30) as client:
        order_url = system.url("order-1")
        limit = asyncio.Semaphore(10)

        async def place(n: int) -> str:
            body = {"customer_id": f"c{n % 7}", "items": [{"sku": "KB-001", "quantity": 1 + n % 3}]}
            async with limit:
                response = await client.post(f"{order_url}/orders", json=body)
            assert response.status_code == 202, response.text
            return str(response.json()["order_id"])

        # A browser's view: a WebSocket on the notification service, open before the orders.
        ws_url = system.url("notification-1").replace("http://", "ws://") + "/ws"
        async with websockets.connect(ws_url) as browser:
            assert json.loads(await browser.recv())["type"] == "hello"
            # Every customer's pushes: for the admin only.
            await browser.send(json.dumps({"type": "auth", "token": ADMIN_TOKEN}))
            assert json.loads(await browser.recv())["type"] == "authorized"
            await browser.send(json.dumps({"type": "subscribe", "all": True}))
            assert json.loads(await browser.recv())["type"] == "subscribed"
            orders = set(await asyncio.gather(*(place(n) for n in range(50))))
            assert len(orders) == 50
            # Two pushes per order: it was received, then its outcome.
            pushed: dict[str, set[str]] = {"received": set(), "confirmed": set()}
            async with asyncio.timeout(90):
                while not all(orders <= ids for ids in pushed.values()):
                    message = json.loads(await browser.recv())
                    assert message["type"] == "notification"
                    pushed[message["kind"]].add(message["order_id"])

        # Each subscriber service shows every order once in its inbox...
        views: dict[str, list[dict[str, Any]]] = {}
        for service in GROUPS:
            url = system.url(f"{service}-1")

            async def complete(url: str = url) -> list[dict[str, Any]] | None:
                rows = [
                    r
                    for r in await processed(client, url)
                    if r["order_id"] in orders and r["type"] == ORDER_CREATED
                ]
                return rows if {r["order_id"] for r in rows} == orders else None

            views[service] = await eventually(complete, within_s=90)
            assert len(views[service]) == 50, f"{service}: one processed event per order"

        # ...and one effect per order.
        for order_id in orders:
            invoice = await client.get(f"{system.url('billing-1')}/invoices/{order_id}")
            assert invoice.status_code == 200
            reservation = await client.get(f"{system.url('inventory-1')}/reservations/{order_id}")
            assert reservation.json()["status"] == "reserved"
            notes = await client.get(
                f"{system.url('notification-1')}/notifications", params={"order_id": order_id}
            )
            assert sorted(n["kind"] for n in notes.json()) == ["confirmed", "received"]
            order = (await client.get(f"{order_url}/orders/{order_id}")).json()
            assert order["status"] == "confirmed"

        # Stock was taken exactly once per order: 1, 2 or 3 keyboards each.
        keyboards = (await client.get(f"{system.url('inventory-1')}/stock/KB-001")).json()
        assert keyboards["reserved"] == sum(1 + n % 3 for n in range(50))

        billing_instances = {r["instance_id"] for r in views["billing"]}
        if caps.competing_consumers:
            assert billing_instances == {"billing-1", "billing-2"}, "both replicas did a share"
        else:
            # Pub/sub: both replicas got every event; the inbox let one of them act.
            async def both_delivered() -> list[dict[str, Any]] | None:
                rows = [
                    r
                    for r in await processed(client, system.url("billing-1"))
                    if r["order_id"] in orders and r["type"] == ORDER_CREATED
                ]
                return rows if all(r["deliveries"] == 2 for r in rows) else None

            rows = await eventually(both_delivered, within_s=90)
            assert len(rows) == 50
            duplicates = 0.0
            for instance in system.instances("billing"):
                metrics = (await client.get(f"{system.url(instance)}/metrics")).text
                duplicates += sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in metrics.splitlines()
                    if line.startswith("orderbus_events_duplicate_total{")
                )
            assert duplicates == 50
