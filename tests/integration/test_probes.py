"""Broker-side gauges move with the broker: what waits for a group, and its dead letters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bus import BusSettings, Delivery
from bus.probes import Backlog, Probe, open_probe
from contracts import CloudEvent
from tests.integration.conftest import BusFactory, Names, Recorder, make_event
from tests.polling import eventually

pytestmark = pytest.mark.timeout(120)

DURABLE = ["redis-streams", "rabbitmq", "kafka", "nats"]
N = 5


@pytest.fixture
async def probe(backend: str, backend_url: str) -> AsyncIterator[Probe]:
    opened = open_probe(BusSettings(backend=backend, url=backend_url))
    yield opened
    await opened.close()


async def backlog_where(
    probe: Probe, topic: str, group: str, ok: str, within_s: float = 20
) -> Backlog:
    """Poll until the backlog satisfies `ok` (an expression on `b`, for the failure message)."""

    async def check() -> Backlog | None:
        b = await probe.backlog(topic, group)
        return b if eval(ok, {}, {"b": b}) else None  # noqa: S307 - the test's own literal

    return await eventually(check, within_s=within_s)


@pytest.mark.parametrize("backend", DURABLE, indirect=True)
async def test_lag_counts_what_waits_for_a_stopped_group(
    backend: str, make_bus: BusFactory, names: Names, probe: Probe
) -> None:
    topic, group = names.topic(), names.group()
    received = Recorder()
    first = await make_bus((topic, received, group, "c1"))
    publisher = await make_bus()
    await publisher.publish(topic, make_event(topic, 0))
    await received.wait_for_count(1)
    await first.close()  # the group stays on the broker, with no consumer

    for i in range(1, N + 1):
        await publisher.publish(topic, make_event(topic, i))
    if backend == "redis-streams":
        # A blocking XREADGROUP the closed consumer had in flight ends on the server only when
        # the server sees its connection close, which may come after a publish on another
        # connection: that entry is then delivered to the gone consumer (pending, redelivered
        # after the idle time) instead of lagging. Both count as waiting for the group.
        found = await backlog_where(probe, topic, group, f"(b.lag or 0) + b.pending == {N}")
        assert found.stream_length == N + 1
        assert (found.pending or 0) <= 1
    else:
        await backlog_where(probe, topic, group, f"b.lag == {N}")

    await make_bus((topic, received, group, "c2"))  # the group comes back and catches up
    await received.wait_for_count(N + 1)
    await backlog_where(probe, topic, group, "b.lag == 0")


@pytest.mark.parametrize("backend", DURABLE, indirect=True)
async def test_dead_letters_are_counted(
    backend: str, make_bus: BusFactory, names: Names, probe: Probe
) -> None:
    topic, group = names.topic(), names.group()

    async def fails(_: CloudEvent, __: Delivery) -> None:
        raise RuntimeError("always")

    await make_bus((topic, fails, group, "c1"), max_attempts=1)
    publisher = await make_bus()
    assert (await probe.backlog(topic, group)).dead_letters == 0
    for i in range(2):
        await publisher.publish(topic, make_event(topic, i))
    await backlog_where(probe, topic, group, "b.dead_letters == 2")
