"""kill -9 a billing replica under a stream of orders: every order still gets one invoice.

What the killed replica held unacknowledged is redelivered by the broker (RabbitMQ at once,
NATS after the ack wait, Redis Streams once reclaimed, Kafka after the group rebalances);
`orderbus up` restarts the replica, as a container restart policy would; the inbox turns any
second delivery of a finished event into a no-op.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from bus import BACKENDS, backend_info
from orderbus.soak import pid_of_port
from tests.e2e.system import System, orderbus_up, remove_system_topology
from tests.polling import eventually

pytestmark = pytest.mark.timeout(300)

DURABLE = [b for b in BACKENDS if backend_info(b).capabilities.offline_catch_up]
ORDERS = 500


async def billing_rows(client: httpx.AsyncClient, system: System) -> list[dict[str, Any]]:
    response = await client.get(f"{system.url('billing-1')}/processed", params={"limit": 1000})
    rows: list[dict[str, Any]] = response.json()["processed"]
    return rows


@pytest.mark.parametrize("backend", DURABLE)
async def test_a_killed_replica_loses_and_doubles_nothing(
    backend: str, backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUS_REDELIVERY_AFTER_MS", "2000")
    groups = ["inventory", "billing", "notification"]
    await remove_system_topology(backend, backend_url, groups)
    with orderbus_up(backend, backend_url, tmp_path, "--replicas", "billing=2") as system:
        async with httpx.AsyncClient(timeout=30) as client:
            gate = asyncio.Semaphore(20)

            async def place(n: int) -> str:
                body = {"customer_id": f"c{n % 11}", "items": [{"sku": "HD-004", "quantity": 1}]}
                async with gate:
                    response = await client.post(f"{system.url('order-1')}/orders", json=body)
                assert response.status_code == 202
                return str(response.json()["order_id"])

            placing = asyncio.gather(*(place(n) for n in range(ORDERS)))

            async def replica_two_busy() -> bool | None:
                rows = await billing_rows(client, system)
                return True if sum(r["instance_id"] == "billing-2" for r in rows) >= 20 else None

            await eventually(replica_two_busy, within_s=120)
            billing_two = system.url("billing-2")
            pid = pid_of_port(int(billing_two.rsplit(":", 1)[1]))
            assert pid is not None, "billing-2 is not running"
            os.kill(pid, signal.SIGKILL)
            orders = set(await placing)

            async def all_billed() -> list[dict[str, Any]] | None:
                rows = [r for r in await billing_rows(client, system) if r["order_id"] in orders]
                return rows if {r["order_id"] for r in rows} == orders else None

            rows = await eventually(all_billed, within_s=180)
            assert len(rows) == ORDERS, "one processed event per order"
            redelivered = sum(r["deliveries"] > 1 for r in rows)
            by_two = sum(r["instance_id"] == "billing-2" for r in rows)
            print(f"{backend}: {by_two} handled by billing-2, {redelivered} delivered again")
            for order_id in list(orders)[:50]:  # a sample; the primary key says "one" for all
                invoice = await client.get(f"{system.url('billing-1')}/invoices/{order_id}")
                assert invoice.status_code == 200

            async def restarted() -> bool | None:
                try:
                    return (await client.get(f"{billing_two}/ready")).status_code == 200 or None
                except httpx.HTTPError:
                    return None

            await eventually(restarted, within_s=60)
    assert "billing-2 exited (-9); restarting it" in system.log.read_text()
    await remove_system_topology(backend, backend_url, groups)
