"""The stage every demo scenario plays on: a topic and groups of its own, consumers that record
what they receive, and a table of what happened.

Each run uses names no running system uses (`demo_<run>`, groups `billing-<run>`), so the
demo can run beside `orderbus up` on the same broker, and it deletes them when it is done.
Consumers here are bus consumers, one connection each, as separate processes would be: the
concepts are the broker's, so the demo shows them without the services' databases. The saga
is the services' own, so its scenario runs them, on the run's names (`Stage.system_bus`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from bus import Bus, BusSettings, Delivery, create_bus
from bus.topology import remove_topology
from contracts import ORDER_CREATED, CloudEvent, OrderCreated, OrderItem, wrap
from contracts.ids import new_id
from orderbus.demo.renamed import renamed

Cell = str | int


@dataclass
class Table:
    """A table of its own under the scenario's, with a caption (the saga's, one per order)."""

    caption: str
    headers: tuple[str, ...]
    rows: list[tuple[Cell, ...]]


@dataclass
class Outcome:
    """What one scenario showed: a table (or several), a one-line lesson, and the facts tests
    check."""

    number: int
    title: str
    headers: tuple[str, ...] = ()
    rows: list[tuple[Cell, ...]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    lesson: str = ""
    facts: dict[str, int] = field(default_factory=dict)
    skipped: str | None = None

    def render(self) -> str:
        head = f"== {self.number}. {self.title}"
        if self.skipped is not None:
            return f"{head}\nskipped: {self.skipped}\n"
        lines = [head, *table_lines(self.headers, self.rows)]
        for table in self.tables:
            lines += ["", table.caption, *table_lines(table.headers, table.rows)]
        return "\n".join([*lines, f"lesson: {self.lesson}", ""])


def table_lines(headers: tuple[str, ...], rows: list[tuple[Cell, ...]]) -> list[str]:
    if not headers:
        return []
    table = [headers, *[tuple(str(c) for c in row) for row in rows]]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(headers))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


@dataclass(frozen=True)
class Received:
    event_id: str
    order_id: str
    consumer: str
    attempt: int | None
    failed: bool


class Consumer:
    """One instance of a service: a bus connection of its own, recording each delivery."""

    def __init__(
        self,
        stage: Stage,
        service: str,
        instance: str,
        work_s: float,
        fails: Callable[[CloudEvent], bool] | None,
    ) -> None:
        self.stage = stage
        self.service = service
        self.instance = instance
        self.work_s = work_s
        self.fails = fails
        self.bus = create_bus(stage.settings)
        self.bus.subscribe(stage.topic, self._handle, group=stage.group(service), consumer=instance)

    async def _handle(self, event: CloudEvent, delivery: Delivery) -> None:
        if self.work_s:
            await asyncio.sleep(self.work_s)  # the consumer's "work"
        failed = self.fails is not None and self.fails(event)
        self.stage.received.append(
            Received(str(event.id), event.subject or "", self.instance, delivery.attempt, failed)
        )
        if failed:
            raise RuntimeError(f"{self.service} cannot handle order {event.subject} (demo bug)")

    def got(self) -> list[Received]:
        return [r for r in self.stage.received if r.consumer == self.instance and not r.failed]


class Stage:
    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings
        self.run = uuid.uuid4().hex[:8]
        self.topic = f"demo_{self.run}"
        self.received: list[Received] = []
        self._topics = {self.topic}
        self._groups: set[str] = set()
        self._buses: list[Bus] = []
        self._publisher: Bus | None = None

    def group(self, service: str) -> str:
        group = f"{service}-{self.run}"
        self._groups.add(group)
        return group

    def system_topic(self, topic: str) -> str:
        """The run's own name for one of the system's topics: `demo_<run>_order_created`."""
        name = f"{self.topic}_{topic}"
        self._topics.add(name)
        return name

    def system_bus(self, settings: BusSettings) -> Bus:
        """A bus for a service of the system, on the run's names instead of the real ones
        (`demo_<run>_order_created`, group `billing-<run>`), so it leaves a running system be."""
        return renamed(create_bus(settings), self.system_topic, self.group)

    async def consumers(
        self,
        *instances: tuple[str, str],
        work_s: float = 0.0,
        fails: Callable[[CloudEvent], bool] | None = None,
    ) -> list[Consumer]:
        """Start (service, instance) consumers together (Kafka assigns partitions once)."""
        made = [Consumer(self, s, i, work_s, fails) for s, i in instances]
        await asyncio.gather(*(c.bus.start() for c in made))
        self._buses.extend(c.bus for c in made)
        return made

    async def stop(self, consumer: Consumer) -> None:
        """Take a consumer offline gracefully (it acknowledges what it handled)."""
        await consumer.bus.close()
        self._buses.remove(consumer.bus)

    async def publisher(self) -> Bus:
        if self._publisher is None:
            self._publisher = create_bus(self.settings)
            await self._publisher.start()
            self._buses.append(self._publisher)
        return self._publisher

    async def publish(self, count: int) -> list[CloudEvent]:
        events = [order_event() for _ in range(count)]
        await self.publish_events(events)
        return events

    async def publish_events(self, events: list[CloudEvent]) -> None:
        publisher = await self.publisher()
        for event in events:
            await publisher.publish(self.topic, event)

    async def close(self) -> None:
        for bus in self._buses:
            with contextlib.suppress(Exception):
                await bus.close()
        self._buses.clear()
        if self.settings.backend != "memory":
            with contextlib.suppress(Exception):
                await remove_topology(
                    self.settings.backend, self.settings.resolved_url, self._topics, self._groups
                )


def short(value: object) -> str:
    """The last eight characters of an id: enough to tell events apart in a table (an id
    begins with the time it was made, the same for every id of the same minute)."""
    return str(value)[-8:]


def order_event() -> CloudEvent:
    order = OrderCreated(
        order_id=new_id(),
        customer_id="demo",
        items=[OrderItem(sku="KB-001", quantity=1, unit_price=Decimal("49.00"))],
        total=Decimal("49.00"),
        currency="EUR",
        created_at=datetime.now(UTC),
    )
    # As the order service writes it: the other services believe no other source.
    return wrap(ORDER_CREATED, order, correlationid=f"demo-{order.order_id}")


async def wait_until(condition: Callable[[], bool], within_s: float) -> bool:
    """Whether `condition` became true within `within_s` (checked every 20 ms)."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)  # the consumers run on this loop: give them the turn
    return True


async def poll(probe: Callable[[], Awaitable[bool]], within_s: float) -> bool:
    """Whether `probe` answered true within `within_s` (asked every 100 ms)."""
    deadline = time.monotonic() + within_s
    while True:
        if await probe():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)


async def on_stage(settings: BusSettings, play: Callable[[Stage], Awaitable[Outcome]]) -> Outcome:
    stage = Stage(settings)
    try:
        return await play(stage)
    finally:
        await stage.close()
