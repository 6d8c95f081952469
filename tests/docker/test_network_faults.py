"""Faults a broker process cannot show, each for 10 s while 2,000 orders flow through the whole
system (`orderbus up`): the broker frozen (`docker pause`: connections open, nothing
answers), cut off its network (`docker network disconnect`: the engine's port proxy ends the
connections, nothing new gets through), and partitioned (its packets dropped both ways inside
its network namespace: connections open, nothing arrives).

Orders placed during a fault are accepted (the outbox holds their events); `/ready` says 503
with `checks.broker` false during each; once it heals every order is decided, each service
handled each order once, and nothing is left hanging: the system catches up by itself and
`orderbus up` stops cleanly.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.broker_containers import RECIPES, BrokerContainer
from tests.brokers import docker_has, image
from tests.docker.conftest import unavailable
from tests.e2e.system import all_decided, all_processed, orderbus_up, place_orders
from tests.polling import eventually

pytestmark = pytest.mark.timeout(900)

ORDERS = 2_000
PER_PHASE = 250
FAULT_S = 10.0
BACKENDS = ["redis-streams", "rabbitmq", "nats"]


@pytest.fixture(params=BACKENDS)
def broker(request: pytest.FixtureRequest, engine: None) -> Iterator[BrokerContainer]:
    backend = str(request.param)
    wanted = image(RECIPES[backend].kind)
    if not docker_has(wanted):
        unavailable(f"the engine holds no {wanted} (deploy/images/build.sh makes a stand-in)")
    container = BrokerContainer(backend, password=f"s3cr3t-{uuid.uuid4().hex}")
    try:
        container.start()
        yield container
    finally:
        container.close()


async def test_orders_ride_out_a_frozen_a_cut_off_and_a_partitioned_broker(
    broker: BrokerContainer, tmp_path: Path
) -> None:
    with orderbus_up(broker.backend, broker.url, tmp_path) as system:
        async with httpx.AsyncClient(timeout=30) as client:
            placed: list[str] = []

            async def order_ready_is(status: int) -> dict[str, Any] | None:
                ready = await client.get(f"{system.url('order-1')}/ready")
                return ready.json() if ready.status_code == status else None

            async def not_ready_for_the_broker() -> None:
                down = await eventually(functools.partial(order_ready_is, 503), within_s=30)
                assert down["checks"]["broker"] is False, down

            faults = [
                (broker.pause, broker.unpause),
                (broker.disconnect, broker.connect),
                (broker.partition, broker.heal),
            ]
            await place_orders(client, system, PER_PHASE, placed)
            for fault, healed in faults:
                fault()
                try:  # the fault lasts FAULT_S (its length, not a wait), orders coming in
                    await asyncio.gather(
                        place_orders(client, system, PER_PHASE, placed), asyncio.sleep(FAULT_S)
                    )
                    await not_ready_for_the_broker()
                finally:
                    healed()
                await eventually(functools.partial(order_ready_is, 200), within_s=60)
                await place_orders(client, system, PER_PHASE, placed)
            await place_orders(client, system, ORDERS - len(placed), placed)

            orders = set(placed)
            await all_decided(client, system, orders)
            await all_processed(client, system, orders)
    assert len(placed) == ORDERS
    assert system.process.returncode == 0, system.log.read_text()[-4_000:]
