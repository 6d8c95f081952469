"""Scaling WebSocket servers with a broker: two notification instances, browsers on each.

Each order is handled by one notification instance (they compete in group `notification`,
or on Redis pub/sub the inbox lets one act), yet every browser listening to that customer
gets the push, whichever instance it is connected to: the handling instance publishes
`notification_pushed` and every instance receives it under a group of its own.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.e2e.system import System, orderbus_up, remove_system_topology
from tests.polling import eventually

pytestmark = pytest.mark.timeout(240)

GROUPS = ["inventory", "billing", "notification"]
KINDS = ("received", "confirmed")
ORDERS_EACH = 3


@pytest.fixture
async def system(backend: str, backend_url: str, tmp_path: Path) -> AsyncIterator[System]:
    await remove_system_topology(backend, backend_url, GROUPS)
    with orderbus_up(backend, backend_url, tmp_path, "--replicas", "notification=2") as running:
        yield running
    assert running.process.returncode == 0, running.log.read_text()[-4000:]
    await remove_system_topology(backend, backend_url, GROUPS)


async def browser(
    stack: AsyncExitStack, system: System, instance: str, customer: str
) -> ClientConnection:
    url = system.url(instance).replace("http://", "ws://") + "/ws"
    socket = await stack.enter_async_context(websockets.connect(url))
    assert json.loads(await socket.recv()) == {"type": "hello", "instance": instance}
    await socket.send(json.dumps({"type": "subscribe", "customer_id": customer}))
    assert json.loads(await socket.recv())["keys"] == [f"customer:{customer}"]
    return socket


async def pushes(socket: ClientConnection, expected: int) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(60):
        while len(received) < expected:
            message = json.loads(await socket.recv())
            assert message["type"] == "notification", message
            received.append(message)
    return received


async def test_every_browser_gets_its_pushes_whichever_instance_it_is_on(system: System) -> None:
    alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    async with AsyncExitStack() as stack, httpx.AsyncClient(timeout=30) as http:
        # Two browsers per customer, one on each instance.
        sockets = {
            (customer, instance): await browser(stack, system, instance, customer)
            for customer in (alice, bob)
            for instance in ("notification-1", "notification-2")
        }
        placed: dict[str, set[str]] = {alice: set(), bob: set()}
        for customer in (alice, bob):
            for _ in range(ORDERS_EACH):
                response = await http.post(
                    f"{system.url('order-1')}/orders",
                    json={"customer_id": customer, "items": [{"sku": "KB-001", "quantity": 1}]},
                )
                assert response.status_code == 202, response.text
                placed[customer].add(response.json()["order_id"])

        # Two pushes per order: it was received, then its outcome (confirmed).
        handled_by: dict[tuple[str, str], set[str]] = {}
        for (customer, instance), socket in sockets.items():
            got = await pushes(socket, 2 * ORDERS_EACH)
            for kind in KINDS:
                orders = {m["order_id"] for m in got if m["kind"] == kind}
                assert orders == placed[customer], f"{kind}: its customer's orders only"
            assert {m["customer_id"] for m in got} == {customer}
            assert {m["delivered_by"] for m in got} == {instance}
            for m in got:
                handled_by.setdefault((m["order_id"], m["kind"]), set()).add(m["handled_by"])

        # Each order was handled by one instance, yet browsers on both instances got it:
        # the other instance's browsers were reached through the broker.
        assert all(len(instances) == 1 for instances in handled_by.values()), handled_by
        for (order_id, kind), instances in handled_by.items():
            rows = (
                await http.get(
                    f"{system.url('notification-1')}/notifications", params={"order_id": order_id}
                )
            ).json()
            assert [r["instance_id"] for r in rows if r["kind"] == kind] == list(instances)

        # Nothing more arrives: no browser gets another customer's push, nor one twice.
        for socket in sockets.values():
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await socket.recv()


@pytest.fixture
async def reporting_system(backend: str, backend_url: str, tmp_path: Path) -> AsyncIterator[System]:
    """Two notification instances with the activity on, as in production: each pushes only
    while a browser listens to it or to a peer whose signed report says so."""
    await remove_system_topology(backend, backend_url, GROUPS)
    with orderbus_up(
        backend,
        backend_url,
        tmp_path,
        "--replicas",
        "notification=2",
        env={"ORDERBUS_ACTIVITY": "true"},
    ) as running:
        yield running
    assert running.process.returncode == 0, running.log.read_text()[-4000:]
    await remove_system_topology(backend, backend_url, GROUPS)


@pytest.mark.parametrize("backend", ["redis-streams", "nats"], indirect=True)
async def test_an_instance_pushes_for_a_browser_it_knows_of_only_from_a_peer(
    reporting_system: System,
) -> None:
    system = reporting_system
    lonely = system.url("notification-1")
    customer = f"carol-{uuid.uuid4().hex[:6]}"
    async with AsyncExitStack() as stack, httpx.AsyncClient(timeout=30) as http:

        async def presence(listened_to: bool) -> dict[str, Any] | None:
            found: dict[str, Any] = (await http.get(f"{lonely}/presence")).json()
            return found if found["listened_to"] is listened_to else None

        # Past its first seconds, with no browser anywhere, notification-1 pushes nothing.
        await eventually(lambda: presence(False), within_s=60)
        # A browser on notification-2 only: notification-1 learns of it from the peer's
        # signed activity report, through the broker.
        socket = await browser(stack, system, "notification-2", customer)
        learned = await eventually(lambda: presence(True), within_s=30)
        assert learned["clients"] == 0, "no browser of its own"

        placed: set[str] = set()
        for _ in range(ORDERS_EACH * 2):
            response = await http.post(
                f"{system.url('order-1')}/orders",
                json={"customer_id": customer, "items": [{"sku": "KB-001", "quantity": 1}]},
            )
            assert response.status_code == 202, response.text
            placed.add(response.json()["order_id"])
        got = await pushes(socket, 2 * len(placed))
        for kind in KINDS:
            assert {m["order_id"] for m in got if m["kind"] == kind} == placed
        assert {m["delivered_by"] for m in got} == {"notification-2"}

        await socket.close()
        await eventually(lambda: presence(False), within_s=30)
