"""The broker dies under a running system, twice, and comes back each time.

Orders keep streaming in; those placed while it is down are accepted (the outbox holds their
events) and `/ready` says the broker is down. Once it is back, publishers and consumers
reconnect by themselves and every order reaches every service exactly once in effect. The
broker and database URLs carry passwords that must appear in no log line, error or endpoint.

Each run gets brokers of its own (Redis with an append-only file, a RabbitMQ node with its own
Mnesia directory, NATS with a JetStream store on disk), since the test kills them: processes,
or with `ORDERBUS_BROKERS=containers` containers (`docker kill`, then `docker start`). Kafka is
not here: Tansu, the Kafka-protocol broker these tests can start without Docker, keeps its
log and committed offsets in memory, so a restart loses what this test checks is kept.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.broker_containers import BrokerContainer
from tests.e2e.private_broker import PRIVATE, PrivateBroker, own_broker
from tests.e2e.system import all_processed, orderbus_up, place_orders
from tests.polling import eventually

pytestmark = pytest.mark.timeout(600)  # 5,000 orders through the whole system, twice interrupted

ORDERS = 5_000


@pytest.fixture(params=list(PRIVATE))
def broker(request: pytest.FixtureRequest) -> Iterator[tuple[str, PrivateBroker | BrokerContainer]]:
    backend = str(request.param)
    private = own_broker(backend, password=f"s3cr3t-{uuid.uuid4().hex}")
    try:
        private.start()
        yield backend, private
    finally:
        private.close()


async def test_orders_survive_two_broker_outages_and_no_secret_leaks(
    broker: tuple[str, PrivateBroker | BrokerContainer],
    postgres_database: Callable[[str], Awaitable[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend, private = broker
    # Production's database for two of the services, its URL with a password too (a trust-auth
    # server accepts it; what matters is that it is never shown).
    db_password = f"pg-{uuid.uuid4().hex}"
    monkeypatch.setenv("ORDER_DATABASE_URL", await postgres_database(db_password))
    monkeypatch.setenv("BILLING_DATABASE_URL", await postgres_database(db_password))
    with orderbus_up(backend, private.url, tmp_path) as system:
        async with httpx.AsyncClient(timeout=30) as client:
            placed: list[str] = []

            async def order_ready_is(status: int) -> dict[str, Any] | None:
                ready = await client.get(f"{system.url('order-1')}/ready")
                return ready.json() if ready.status_code == status else None

            # Up for the first third; down for 50 orders; up to half; down for 50; up to the end.
            await place_orders(client, system, ORDERS // 3, placed)
            for up_to_half in (ORDERS // 2 - ORDERS // 3 - 50, ORDERS - ORDERS // 2 - 50):
                private.kill()
                down = await eventually(functools.partial(order_ready_is, 503))
                assert down["checks"]["broker"] is False
                await place_orders(client, system, 50, placed)  # accepted while it is down
                private.start()
                await eventually(functools.partial(order_ready_is, 200), 60)
                await place_orders(client, system, up_to_half, placed)

            await all_processed(client, system, set(placed))
            seen_by_http = [
                (await client.get(f"{url}{path}")).text
                for url in system.urls.values()
                for path in ("/metrics", "/ready", "/health")
            ]
    assert len(placed) == ORDERS
    assert system.process.returncode == 0
    for text in [*seen_by_http, system.log.read_text()]:
        assert private.password not in text
        assert db_password not in text
