"""SIGTERM to every service while orders stream in, then start again: nothing lost, nothing
done twice.

Each service stops taking messages, finishes the one in flight and acknowledges it; the order
service's outbox keeps whatever it had not yet published; on restart the relay publishes it
and the brokers deliver what the subscribers had not acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bus import BACKENDS, backend_info
from contracts import ORDER_CREATED
from tests.e2e.system import System, orderbus_up, remove_system_topology
from tests.polling import eventually

pytestmark = pytest.mark.timeout(300)

DURABLE = [b for b in BACKENDS if backend_info(b).capabilities.offline_catch_up]
GROUPS = ["inventory", "billing", "notification"]


async def place_until_refused(client: httpx.AsyncClient, system: System) -> set[str]:
    """Place orders as fast as 10 clients can until the order service stops answering."""
    accepted: set[str] = set()

    async def client_loop(n: int) -> None:
        with contextlib.suppress(httpx.HTTPError):
            while True:
                body = {"customer_id": f"c{n}", "items": [{"sku": "WC-007", "quantity": 1}]}
                response = await client.post(f"{system.url('order-1')}/orders", json=body)
                if response.status_code != 202:
                    return
                accepted.add(str(response.json()["order_id"]))

    await asyncio.gather(*(client_loop(n) for n in range(10)))
    return accepted


@pytest.mark.parametrize("backend", DURABLE)
async def test_sigterm_under_load_then_restart_loses_and_doubles_nothing(
    backend: str, backend_url: str, tmp_path: Path
) -> None:
    await remove_system_topology(backend, backend_url, GROUPS)
    async with httpx.AsyncClient(timeout=10) as client:
        with orderbus_up(backend, backend_url, tmp_path) as first:
            placing = asyncio.create_task(place_until_refused(client, first))

            async def some_handled() -> bool | None:
                rows = (await client.get(f"{first.url('billing-1')}/processed")).json()
                return True if len(rows["processed"]) >= 30 else None

            await eventually(some_handled, within_s=60)
            first.process.send_signal(signal.SIGTERM)  # `up` passes it on to every service
            first.process.wait(timeout=60)
            accepted = await placing
        assert first.process.returncode == 0, first.log.read_text()[-3000:]
        assert len(accepted) >= 30

        restarted_at = datetime.now(UTC)
        with orderbus_up(backend, backend_url, tmp_path) as second:
            for service in GROUPS:
                url = second.url(f"{service}-1")

                async def complete(url: str = url) -> list[dict[str, Any]] | None:
                    response = await client.get(f"{url}/processed", params={"limit": 1000})
                    rows = [
                        r
                        for r in response.json()["processed"]
                        if r["order_id"] in accepted and r["type"] == ORDER_CREATED
                    ]
                    return rows if {r["order_id"] for r in rows} == accepted else None

                rows = await eventually(complete, within_s=120)
                assert len(rows) == len(accepted), f"{service}: once each"
                after = sum(datetime.fromisoformat(r["processed_at"]) > restarted_at for r in rows)
                print(
                    f"{backend} {service}: {len(accepted)} accepted, {after} handled after restart"
                )
    await remove_system_topology(backend, backend_url, GROUPS)
