"""Sections 1-3: publish, consume and end-to-end latency, the bus next to the raw client.

Every run uses fresh topic and group names (`bench_<hex>`), so nothing left from one run
is counted in the next, and nothing collides with the system's own `order_created`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bus import Bus, BusSettings, Delivery, create_bus
from contracts import ORDER_CREATED, CloudEvent, OrderCreated, OrderItem
from contracts.ids import new_id
from orderbus.bench.figures import percentile
from orderbus.bench.raw import RAW_CLIENTS, RawClient

log = logging.getLogger(__name__)

WINDOW = 64
"""Publishes in flight at once in the batched figures, for the bus and the raw client alike.
(Before the Redis backends pipelined concurrent publishes, more than redis-py's pool of 100
connections failed with MaxConnectionsError; 64 kept the first measurements comparable.)"""
CONSUME_TIMEOUT_S = 60.0


def sample_events(count: int) -> list[CloudEvent]:
    """`order_created` events as the order service builds them (two lines, ~600 bytes)."""
    now = CloudEvent(source="/bench", type="bench", data={}).time
    events = []
    for _ in range(count):
        order = OrderCreated(
            order_id=new_id(),
            customer_id="bench",
            items=[
                OrderItem(sku="KB-001", quantity=1, unit_price=Decimal("89.00")),
                OrderItem(sku="MS-002", quantity=2, unit_price=Decimal("24.50")),
            ],
            total=Decimal("138.00"),
            currency="EUR",
            created_at=now,
        )
        events.append(
            CloudEvent.of(order, type=ORDER_CREATED, source="/bench", subject=str(order.order_id))
        )
    return events


def encoded(events: list[CloudEvent]) -> list[tuple[bytes, bytes]]:
    """What the raw client publishes: the same events, encoded before the clock starts."""
    return [(e.to_json(), (e.subject or "").encode()) for e in events]


@dataclass
class Scope:
    """One backend's measurements: its URL, its raw client, and every name to clean up."""

    backend: str
    url: str
    raw: RawClient
    topics: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def topic(self) -> str:
        self.topics.append(f"bench_{uuid.uuid4().hex[:10]}")
        return self.topics[-1]

    def group(self) -> str:
        self.groups.append(f"bench-{uuid.uuid4().hex[:8]}")
        return self.groups[-1]

    def bus(self) -> Bus:
        return create_bus(BusSettings(backend=self.backend, url=self.url))


@contextlib.asynccontextmanager
async def scope(backend: str, url: str) -> Any:
    raw = RAW_CLIENTS[backend](url)
    await raw.open()
    used = Scope(backend, url, raw)
    try:
        yield used
    finally:
        with contextlib.suppress(Exception):
            await raw.remove(used.topics, used.groups)
        await raw.close()


# -- 1. publish ---------------------------------------------------------------------------


async def bus_publish(s: Scope, count: int, batched: bool) -> float:
    events = sample_events(count)
    topic = s.topic()
    await s.raw.prepare(topic, s.group())  # the same topology the raw run publishes into
    bus = s.bus()
    await bus.start()
    try:
        await bus.publish(topic, events[0])  # declares the topic on first use: not timed
        started = time.perf_counter()
        if batched:
            for at in range(0, count, WINDOW):
                await asyncio.gather(*(bus.publish(topic, e) for e in events[at : at + WINDOW]))
        else:
            for event in events:
                await bus.publish(topic, event)
        return count / (time.perf_counter() - started)
    finally:
        await bus.close()


async def raw_publish(s: Scope, count: int, batched: bool) -> float:
    items = encoded(sample_events(count))
    topic = s.topic()
    await s.raw.prepare(topic, s.group())
    await s.raw.publish(topic, *items[0])
    started = time.perf_counter()
    if batched:
        for at in range(0, count, WINDOW):
            await s.raw.publish_many(topic, items[at : at + WINDOW])
    else:
        for body, key in items:
            await s.raw.publish(topic, body, key)
    return count / (time.perf_counter() - started)


# -- 2. consume ---------------------------------------------------------------------------


class Arrivals:
    """Counts deliveries; the rate runs from the first to the last, so start-up is excluded."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.times: list[float] = []
        self.all_in = asyncio.Event()

    def arrived(self) -> None:
        self.times.append(time.perf_counter())
        if len(self.times) >= self.expected:
            self.all_in.set()

    def rate(self) -> float:
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


async def _fill(s: Scope, topic: str, count: int) -> None:
    items = encoded(sample_events(count))
    for at in range(0, count, WINDOW):
        await s.raw.publish_many(topic, items[at : at + WINDOW])


async def _await_all(arrivals: Arrivals) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CONSUME_TIMEOUT_S):
            await arrivals.all_in.wait()


async def bus_consume(s: Scope, count: int) -> float:
    topic, group = s.topic(), s.group()
    arrivals = Arrivals(count)
    retained = s.backend != "redis-pubsub"

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        arrivals.arrived()

    if retained:  # the backlog waits in the broker before the consumer starts
        await s.raw.prepare(topic, group)
        await _fill(s, topic, count)
    bus = s.bus()
    bus.subscribe(topic, handler, group=group, consumer="bench-1")
    await bus.start()
    try:
        if not retained:  # pub/sub keeps nothing: publish while it listens
            await _fill(s, topic, count)
        await _await_all(arrivals)
        return arrivals.rate()
    finally:
        await bus.close()


async def raw_consume(s: Scope, count: int) -> float:
    topic, group = s.topic(), s.group()
    arrivals = Arrivals(count)
    retained = s.backend != "redis-pubsub"

    def on_body(body: bytes) -> None:
        json.loads(body)
        arrivals.arrived()

    if retained:
        await s.raw.prepare(topic, group)
        await _fill(s, topic, count)
    ready, stop = asyncio.Event(), asyncio.Event()
    consuming = asyncio.create_task(s.raw.consume(topic, group, on_body, ready, stop))
    try:
        await ready.wait()
        if not retained:
            await _fill(s, topic, count)
        await _await_all(arrivals)
        return arrivals.rate()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await consuming


# -- 3. end-to-end latency ----------------------------------------------------------------


@dataclass(frozen=True)
class LatencyRun:
    rate: float
    sent: int
    delivered: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    sustained: bool


async def _paced(
    count: int, rate: float, started: float, send: Callable[[int], Awaitable[None]]
) -> None:
    """Send `count` messages at `rate`/s, open loop: message i is due at started + i/rate, and
    its latency counts from then, so a publisher that falls behind shows it. At most `WINDOW`
    publishes are in flight; one that fails is not retried (and so never arrives)."""
    in_flight = asyncio.Semaphore(WINDOW)
    tasks: set[asyncio.Task[None]] = set()
    failures: list[Exception] = []

    async def one(i: int) -> None:
        try:
            await send(i)
        except Exception as exc:  # noqa: BLE001 - counted: it never arrives, so not sustained
            failures.append(exc)
        finally:
            in_flight.release()

    for i in range(count):
        if (wait := started + i / rate - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        await in_flight.acquire()
        task = asyncio.create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    if failures:
        log.warning("%d of %d publishes failed, first: %r", len(failures), count, failures[0])


def _summary(rate: float, count: int, latencies: list[float], finished: float) -> LatencyRun:
    ms = [x * 1_000 for x in latencies]
    duration = count / rate
    return LatencyRun(
        rate=rate,
        sent=count,
        delivered=len(ms),
        p50_ms=percentile(ms, 50),
        p95_ms=percentile(ms, 95),
        p99_ms=percentile(ms, 99),
        # Kept up: everything arrived, and within a tenth of the run (plus 0.2 s) of its end.
        sustained=len(ms) >= count and finished <= duration * 1.1 + 0.2,
    )


async def bus_latency(s: Scope, rate: float, seconds: float) -> LatencyRun:
    count = max(2, int(rate * seconds))
    events = sample_events(count)
    index = {e.id: n for n, e in enumerate(events)}
    topic, group = s.topic(), s.group()
    due_at: list[float] = [0.0] * count
    latencies: list[float] = []
    last = [0.0]
    done = asyncio.Event()

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        now = time.perf_counter()
        n = index.get(event.id)
        if n is None:
            return  # the warm-up event
        latencies.append(now - due_at[n])
        last[0] = now
        if len(latencies) >= count:
            done.set()

    await s.raw.prepare(topic, group)
    bus = s.bus()
    bus.subscribe(topic, handler, group=group, consumer="bench-1")
    await bus.start()
    try:
        await bus.publish(topic, sample_events(1)[0])  # declare the topic: not timed
        await asyncio.sleep(0.2)
        started = time.perf_counter()

        async def send(i: int) -> None:
            due_at[i] = started + i / rate
            await bus.publish(topic, events[i])

        await _paced(count, rate, started, send)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(count / rate + 5):
                await done.wait()
        return _summary(rate, count, latencies, last[0] - started)
    finally:
        await bus.close()


async def raw_latency(s: Scope, rate: float, seconds: float) -> LatencyRun:
    count = max(2, int(rate * seconds))
    items = encoded(sample_events(count))
    index = {json.loads(body)["id"]: n for n, (body, _) in enumerate(items)}
    topic, group = s.topic(), s.group()
    due_at: list[float] = [0.0] * count
    latencies: list[float] = []
    last = [0.0]
    done = asyncio.Event()

    def on_body(body: bytes) -> None:
        now = time.perf_counter()
        n = index.get(json.loads(body)["id"])
        if n is None:
            return  # the warm-up message
        latencies.append(now - due_at[n])
        last[0] = now
        if len(latencies) >= count:
            done.set()

    await s.raw.prepare(topic, group)
    ready, stop = asyncio.Event(), asyncio.Event()
    consuming = asyncio.create_task(s.raw.consume(topic, group, on_body, ready, stop))
    try:
        await ready.wait()
        await s.raw.publish(topic, *encoded(sample_events(1))[0])
        await asyncio.sleep(0.2)
        started = time.perf_counter()

        async def send(i: int) -> None:
            due_at[i] = started + i / rate
            await s.raw.publish(topic, *items[i])

        await _paced(count, rate, started, send)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(count / rate + 5):
                await done.wait()
        return _summary(rate, count, latencies, last[0] - started)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await consuming
