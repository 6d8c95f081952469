"""Integration fixtures: a bus per backend on a real broker, named and cleaned per test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bus import Bus, BusSettings, Delivery, create_bus
from contracts import CloudEvent
from tests.integration.native import remove_topology

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@dataclass
class Names:
    """Random topic and group names per test, remembered for clean-up."""

    topics: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def topic(self) -> str:
        self.topics.append(f"t_{uuid.uuid4().hex[:10]}")
        return self.topics[-1]

    def group(self) -> str:
        self.groups.append(f"g-{uuid.uuid4().hex[:8]}")
        return self.groups[-1]


@pytest.fixture
async def names(backend: str, backend_url: str) -> AsyncIterator[Names]:
    used = Names()
    yield used
    await remove_topology(backend, backend_url, used.topics, used.groups)


BusFactory = Callable[..., Awaitable[Bus]]


@pytest.fixture
async def make_bus(backend: str, backend_url: str, names: Names) -> AsyncIterator[BusFactory]:
    """`await make_bus(subscriptions...)`: a started bus; every one is closed after the test.
    `ephemeral=True` makes its subscriptions ephemeral (`Bus.subscribe`); `batched=True`
    subscribes batch handlers (`Bus.subscribe_batch`)."""
    buses: list[Bus] = []

    async def make(
        *subscriptions: tuple[str, Any, str, str],
        ephemeral: bool = False,
        batched: bool = False,
        **overrides: Any,
    ) -> Bus:
        settings = BusSettings(
            backend=backend,
            url=backend_url,
            # Short enough that redelivery tests run in seconds, long enough for a handler.
            redelivery_after_ms=overrides.pop("redelivery_after_ms", 1_000),
            **overrides,
        )
        bus = create_bus(settings)
        for topic, handler, group, consumer in subscriptions:
            subscribe = bus.subscribe_batch if batched else bus.subscribe
            subscribe(topic, handler, group=group, consumer=consumer, ephemeral=ephemeral)
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in reversed(buses):
        await bus.close()


class Recorder:
    """A handler that records what it was given; tests await conditions on it, never sleep."""

    def __init__(self) -> None:
        self.received: list[tuple[CloudEvent, Delivery]] = []
        self._changed = asyncio.Condition()

    async def __call__(self, event: CloudEvent, delivery: Delivery) -> None:
        async with self._changed:
            self.received.append((event, delivery))
            self._changed.notify_all()

    @property
    def ids(self) -> list[uuid.UUID]:
        return [event.id for event, _ in self.received]

    def ids_of(self, consumer: str) -> list[uuid.UUID]:
        """What one consumer received (one recorder can serve every consumer of a test)."""
        return [event.id for event, delivery in self.received if delivery.consumer == consumer]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 30) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def wait_for_count(self, n: int, timeout: float = 30) -> None:
        await self.wait_until(lambda: len(self.received) >= n, timeout)


def make_event(topic: str, i: int, *, subject: str | None = None, **data: Any) -> CloudEvent:
    return CloudEvent(
        source="/tests/conformance",
        type=topic,
        subject=subject or f"order-{uuid.uuid4()}",
        data={"i": i, **data},
        correlationid=f"corr-{uuid.uuid4().hex}",
    )
