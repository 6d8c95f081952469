"""The broker dies under a running system and comes back.

Orders placed meanwhile are accepted (the outbox holds their events), `/ready` says the broker
is down, and once it returns every order reaches every service exactly once in effect. The
broker URL carries a password that must appear in no log line, error or endpoint.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.private_broker import PrivateRedis
from tests.e2e.system import System, orderbus_up
from tests.polling import eventually

pytestmark = pytest.mark.timeout(300)

SUBSCRIBERS = ["inventory", "billing", "notification"]


@pytest.fixture
def redis_with_password() -> Iterator[PrivateRedis]:
    broker = PrivateRedis(password=f"s3cr3t-{uuid.uuid4().hex}")
    broker.start()
    yield broker
    broker.close()


async def place_orders(client: httpx.AsyncClient, system: System, n: int) -> set[str]:
    async def place(i: int) -> str:
        body = {"customer_id": f"c{i}", "items": [{"sku": "CB-005", "quantity": 1}]}
        response = await client.post(f"{system.url('order-1')}/orders", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["order_id"])

    return set(await asyncio.gather(*(place(i) for i in range(n))))


async def processed_orders(client: httpx.AsyncClient, url: str) -> list[str]:
    rows: list[dict[str, Any]] = (
        await client.get(f"{url}/processed", params={"limit": 1000})
    ).json()["processed"]
    return [row["order_id"] for row in rows]


async def all_processed(client: httpx.AsyncClient, system: System, orders: set[str]) -> None:
    for service in SUBSCRIBERS:
        url = system.url(f"{service}-1")

        async def complete(url: str = url) -> list[str] | None:
            seen = await processed_orders(client, url)
            return seen if orders <= set(seen) else None

        seen = await eventually(complete, within_s=120)
        assert sorted(o for o in seen if o in orders) == sorted(orders), f"{service}: once each"


async def test_orders_survive_a_broker_outage_and_no_secret_leaks(
    redis_with_password: PrivateRedis,
    postgres_database: Callable[[str], Awaitable[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = redis_with_password
    # Production's database for two of the services, its URL with a password too (a trust-auth
    # server accepts it; what matters is that it is never shown).
    db_password = f"pg-{uuid.uuid4().hex}"
    monkeypatch.setenv("ORDER_DATABASE_URL", await postgres_database(db_password))
    monkeypatch.setenv("BILLING_DATABASE_URL", await postgres_database(db_password))
    with orderbus_up("redis-streams", broker.url, tmp_path) as system:
        async with httpx.AsyncClient(timeout=30) as client:
            before = await place_orders(client, system, 10)
            await all_processed(client, system, before)

            broker.kill()
            during = await place_orders(client, system, 20)  # accepted: the outbox keeps them

            async def order_not_ready() -> dict[str, Any] | None:
                ready = await client.get(f"{system.url('order-1')}/ready")
                return ready.json() if ready.status_code == 503 else None

            assert (await eventually(order_not_ready))["checks"]["broker"] is False

            broker.start()
            await all_processed(client, system, before | during)
            assert (await client.get(f"{system.url('order-1')}/ready")).status_code == 200

            seen_by_http = [
                (await client.get(f"{url}{path}")).text
                for url in system.urls.values()
                for path in ("/metrics", "/ready", "/health")
            ]
    assert system.process.returncode == 0
    for text in [*seen_by_http, system.log.read_text()]:
        assert broker.password not in text
        assert db_password not in text
