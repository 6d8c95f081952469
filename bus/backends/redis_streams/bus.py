"""Redis Streams: a persistent log with consumer groups, the notes' "queue" done right.

URL: `redis://[:password@]host:port/db` (default `redis://127.0.0.1:6379/0`). The topic is the
stream key; each group is a Redis consumer group (created at `$`, so a new group starts with
what is published after it); the consumer is the instance id.

| feature | |
|---|---|
| fan-out across groups | yes: one consumer group per service |
| competing consumers | yes: consumers of a group share its entries |
| offline catch-up | yes: entries wait in the stream for the group |
| redelivery | yes: an entry left pending (handler raised, consumer died) is reclaimed |
|            | with XAUTOCLAIM after `BUS_REDELIVERY_AFTER_MS` idle |
| ordering | per stream, with one consumer |

A stream is trimmed (`XTRIM MINID`) by its publishers, below the oldest entry any of its
groups still needs (not yet delivered to it, or pending) and below `BUS_STREAM_RETENTION_S`
ago: an entry is dropped only once every group is done with it. The publisher, because it alone
may write the stream anyway (a broker user per service, see deploy/brokers): a consumer
allowed to trim could delete what others have not read. A live-view stream read here only by
ephemeral groups is trimmed by its readers by age alone (`BUS_EPHEMERAL_EXPIRY_S`), as the
group of a crashed instance would otherwise hold it for good; dead letters (`dlq.<group>`)
by their group after `BUS_DEAD_LETTER_RETENTION_S`. Consumers
that died are removed from their group once idle for `BUS_DEAD_CONSUMER_AFTER_S` with nothing
pending.

A consumer reads with `XREADGROUP COUNT BUS_PREFETCH BLOCK READ_BLOCK_MS` and hands the whole
read to the delivery pipeline; what waits its turn there has its idle time reset (`XCLAIM ...
JUSTID`, which counts no delivery) every third of `BUS_REDELIVERY_AFTER_MS`, so only entries
of a dead consumer, or left pending for a retry, are reclaimed: beside the reader, a loop
takes them with `XAUTOCLAIM` once idle that long. Both loops are the bus's own, on redis-py,
and end on a flag at close (a cancelled redis-py call may go on: docs/delivery-guarantees.md).
A group found gone (`NOGROUP`: the stream was deleted, or a Redis without persistence
restarted empty) is created again at the stream's start, so what was published since is read
(an ephemeral group at its end, as it began).

An ephemeral group (`Bus.subscribe`) is destroyed (`XGROUP DESTROY`) when its bus closes.
Redis has no expiry for a group, so one whose process died without closing stays; it holds
no entries (a group is a read position and at most `BUS_PREFETCH` pending ids), so it grows
nothing, and `XGROUP DESTROY <topic> <group>` removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import redis.asyncio as redis
from faststream import AckPolicy, StreamMessage
from faststream.redis import RedisBroker, StreamSub
from redis.exceptions import ResponseError

from bus import names
from bus.backends._coalesced_acks import CoalescedAcks
from bus.backends._faststream import FastStreamBus, documented
from bus.backends._redis import DATA_FIELD
from bus.backends._redis.format import PlainMessageFormat
from bus.backends._redis.outage import Outages
from bus.backends._redis.pipeline import PipelinedPublisher
from bus.backends.redis_streams import BACKEND
from bus.codec import PoisonMessage
from bus.pipeline import Pipeline, Route
from bus.port import Capabilities

log = logging.getLogger(__name__)

READ_BLOCK_MS = 100
"""How long one `XREADGROUP` waits for new entries: also how soon a reader sees `close`."""

RECONNECT_S = 1.0
"""The pause between reads once redis-py's own reconnects gave up."""

STOP_WAIT_S = 1.0
"""The most `close` waits for the read loops to see their flag; past it they are cancelled
(one still waiting for its batch to settle: the pipeline's close waits for that batch)."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _position(entry_id: str) -> tuple[int, ...]:
    """An entry id (`<ms>-<seq>`) as something that sorts as the stream does."""
    return tuple(int(part) for part in entry_id.split("-"))


async def _raw(message: Any) -> StreamMessage[Any]:
    """FastStream's parser, for the document's subscribers: it never parses anything."""
    return StreamMessage(raw_message=message, body=b"")


@dataclass(frozen=True, eq=False)
class _Entry:
    entry_id: str
    fields: dict[bytes, bytes]
    attempt: int | None


class _Transport:
    redelivers_on_a_timer = True

    def __init__(self, bus: RedisStreamsBus, route: Route) -> None:
        self._bus = bus
        self._route = route
        self.acks = CoalescedAcks(self._xack, f"{route.topic}/{route.group}")

    @property
    def _client(self) -> Any:
        return self._bus._broker.config.connection.client

    def body(self, message: _Entry) -> bytes:
        body = message.fields.get(DATA_FIELD)
        if body is None:
            raw = {_bytes(k): _bytes(v) for k, v in message.fields.items()}
            fields = sorted(k.decode(errors="replace") for k in raw)
            raise PoisonMessage(
                f"stream entry without a {DATA_FIELD.decode()} field: {fields[:5]}",
                raw=b"\n".join(k + b"=" + v for k, v in raw.items()),
            )
        return body

    async def attempt(self, message: _Entry) -> int | None:
        return message.attempt

    def scope(self, message: _Entry) -> None:
        return None

    async def ack(self, messages: Sequence[_Entry]) -> None:
        for message in messages:
            await self.acks.add(message.entry_id)

    async def retry(self, message: _Entry, delay_s: float) -> None:
        # Left pending: the reclaimer takes it once it has been idle for
        # BUS_REDELIVERY_AFTER_MS (a fixed delay: XAUTOCLAIM has one idle time per call).
        return

    async def keep_alive(self, messages: Sequence[_Entry]) -> None:
        # FastStream has no "in progress" for streams. XCLAIM to ourselves resets the idle
        # time, and with JUSTID it does not count a delivery.
        route = self._route
        await self._client.xclaim(
            route.topic,
            route.group,
            route.consumer,
            0,
            [m.entry_id for m in messages],
            justid=True,
        )

    async def dead_letter(self, record: bytes) -> None:
        await self._bus._publish_dead_letter(self._route.group, record)

    async def release(self, messages: Sequence[Any]) -> None:
        return  # unacknowledged: the broker delivers them again

    async def _xack(self, entry_ids: list[str]) -> None:
        await self._client.xack(self._route.topic, self._route.group, *entry_ids)


async def trim(client: Any, topic: str, retention_s: int, *, by_groups: bool = True) -> int:
    """Trim `topic` below `retention_s` ago and (`by_groups`) below what its groups still
    need: how many entries went. Exact: the approximate form (`~`) drops whole nodes of 100
    entries only, so it would never trim a stream that short."""
    needed: list[tuple[int, ...]] = [(int(time.time() * 1000) - retention_s * 1000, 0)]
    for info in await client.xinfo_groups(topic) if by_groups else ():
        group = info["name"]
        needed.append(_after(_text(info["last-delivered-id"])))
        if info["pending"]:
            summary = await client.xpending(topic, group)
            needed.append(_position(_text(summary["min"])))
    ms, seq = min(needed)
    if ms <= 0:
        return 0
    trimmed: int = await client.xtrim(topic, minid=f"{ms}-{seq}", approximate=False)
    if trimmed:
        log.debug("trimmed %d entries of %s", trimmed, topic)
    return trimmed


async def _create_group(client: Any, topic: str, group: str, at: str) -> None:
    """Create `group` on `topic` (and the stream, if none) at entry `at`; one that exists
    is left as it is."""
    try:
        await client.xgroup_create(topic, group, id=at, mkstream=True)
    except ResponseError as exc:
        if not str(exc).startswith("BUSYGROUP"):
            raise


def _after(entry_id: str) -> tuple[int, ...]:
    """The id right after `entry_id`: the oldest entry a group at that position still needs."""
    ms, seq = _position(entry_id)
    return ms, seq + 1


class RedisStreamsBus(FastStreamBus[RedisBroker]):
    """Reads with loops of its own (`_read`, `_reclaim`) and removes the consumers that
    died (`_maintain`)."""

    name: ClassVar[str] = BACKEND.name
    capabilities: ClassVar[Capabilities] = BACKEND.capabilities

    @staticmethod
    def publisher_arguments(topic: str) -> dict[str, Any]:
        return {"stream": StreamSub(topic)}

    publishes_keep_order_together: ClassVar[bool] = True  # one pipeline, in arrival order

    def _create_broker(self, url: str, **common: Any) -> RedisBroker:
        self._groups: list[tuple[str, str, str]] = []
        self._ephemeral: list[tuple[str, str]] = []  # (topic, group)
        self._sweeper: asyncio.Task[None] | None = None
        self._transports: list[_Transport] = []
        self._published: set[str] = set()  # the streams this bus trims
        self._readers: list[tuple[Route, Pipeline[_Entry]]] = []
        self._loops: list[asyncio.Task[None]] = []  # each group's reader and reclaimer
        self._reading = False
        self._outages = Outages(self.name, RECONNECT_S)
        # Plain XADDs; concurrent ones share a round trip (see _redis/pipeline.py).
        self._pipelined = PipelinedPublisher(lambda: self._broker.config.connection.client)
        return RedisBroker(url, message_format=PlainMessageFormat, **common)

    async def start(self) -> None:
        await super().start()
        self._sweeper = asyncio.create_task(self._maintain())

    async def close(self) -> None:
        self._started = False  # the sweeper's loop ends at its next round
        if self._sweeper is not None:
            self._sweeper.cancel()
            # Bounded: a cancellation that lands inside a redis-py call can be lost (see
            # docs/delivery-guarantees.md); it holds nothing worth waiting for.
            await asyncio.wait([self._sweeper], timeout=2)
        await super().close()  # in-flight entries are acknowledged before their group goes
        if self._ephemeral:
            await self._destroy_ephemeral_groups()

    async def _drain(self) -> None:
        for transport in self._transports:
            await transport.acks.drain()

    async def _destroy_ephemeral_groups(self) -> None:
        # The broker's connection is closed by now: a short one of our own.
        client = redis.from_url(self._settings.resolved_url)
        try:
            for topic, group in self._ephemeral:
                with contextlib.suppress(redis.ResponseError):  # no stream: no group either
                    await client.xgroup_destroy(topic, group)
        except Exception:  # closing goes on; the group only stays behind
            log.warning("could not destroy ephemeral groups %s", self._ephemeral, exc_info=True)
        finally:
            await client.aclose()

    async def _maintain(self) -> None:
        after_ms = self._settings.dead_consumer_after_s * 1_000
        client = self._broker.config.connection.client
        while self._started:
            await asyncio.sleep(max(0.5, min(60.0, after_ms / 2_000)))
            for topic, group, me in self._groups:
                try:
                    await self._sweep_dead_consumers(client, topic, group, me, after_ms)
                except Exception:
                    log.debug("cannot sweep consumers of %s/%s", topic, group, exc_info=True)
            durable = {(t, g) for t, g, _ in self._groups} - set(self._ephemeral)
            read_live = {t for t, _ in self._ephemeral} - {t for t, _ in durable}
            retention = (
                dict.fromkeys(self._published, self._settings.stream_retention_s)
                | dict.fromkeys(read_live, self._settings.ephemeral_expiry_s)
                | {
                    names.dead_letters(g): self._settings.dead_letter_retention_s
                    for _, g in durable
                }
            )
            by_age_only = read_live | {names.dead_letters(g) for _, g in durable}
            for topic, retention_s in retention.items():
                try:
                    await trim(client, topic, retention_s, by_groups=topic not in by_age_only)
                except Exception:
                    log.debug("cannot trim %s", topic, exc_info=True)

    @staticmethod
    async def _sweep_dead_consumers(
        client: Any, topic: str, group: str, me: str, after_ms: int
    ) -> None:
        for consumer in await client.xinfo_consumers(topic, group):
            name = _text(consumer["name"])
            if name != me and consumer["pending"] == 0 and consumer["idle"] > after_ms:
                await client.xgroup_delconsumer(topic, group, name)
                log.info("removed dead consumer %s from %s/%s", name, topic, group)

    def _register(self, route: Route) -> None:
        # Read with redis-py itself (`_await_live`), not through FastStream's subscribers: its
        # chain per read cost more than redis-py's own, and its reader stopped for good on a
        # group found gone (docs/performance.md, "Redis Streams read without FastStream").
        self._groups.append((route.topic, route.group, route.consumer))
        if route.ephemeral:
            self._ephemeral.append((route.topic, route.group))
        transport = _Transport(self, route)
        self._transports.append(transport)
        self._readers.append((route, self._pipeline(route, transport)))

    def _document(self, route: Route) -> None:
        """FastStream's subscribers of what `_register` reads, for the AsyncAPI document."""

        async def deliver(message: StreamMessage[Any]) -> None:
            raise AssertionError("documentation only: never started")

        topic, group, consumer = route.topic, route.group, route.consumer
        for reader in (
            StreamSub(topic, group=group, consumer=consumer, batch=True),
            StreamSub(
                topic,
                group=group,
                consumer=consumer,
                min_idle_time=self._settings.redelivery_after_ms,
                batch=True,
            ),
        ):
            self._broker.subscriber(
                stream=reader, ack_policy=AckPolicy.MANUAL, parser=_raw, no_reply=True
            )(documented(deliver, route))

    async def _await_live(self) -> None:
        """Create every group (at the stream's end: it gets what is published from now on)
        and start its reader and reclaimer."""
        client = self._broker.config.connection.client
        for route, _ in self._readers:
            await _create_group(client, route.topic, route.group, "$")
        self._reading = True
        self._outages.start()
        for route, pipeline in self._readers:
            name = f"{route.topic}/{route.group}"
            self._loops.append(
                asyncio.create_task(self._read(route, pipeline), name=f"read {name}")
            )
            self._loops.append(
                asyncio.create_task(self._reclaim(route, pipeline), name=f"reclaim {name}")
            )

    async def _stop_fetching(self) -> None:
        self._reading = False
        self._outages.stop()
        if self._loops:
            _, late = await asyncio.wait(self._loops, timeout=STOP_WAIT_S)
            for loop in late:
                loop.cancel()
        self._loops = []

    async def _read(self, route: Route, pipeline: Pipeline[_Entry]) -> None:
        """New entries of the group, a read at a time, each handed to the pipeline whole."""
        client = self._broker.config.connection.client
        streams = {route.topic: ">"}
        name = f"{route.topic}/{route.group}"
        while self._reading:
            try:
                answer = await client.xreadgroup(
                    route.group,
                    route.consumer,
                    streams,
                    count=self._settings.prefetch,
                    block=READ_BLOCK_MS,
                )
            except Exception as exc:  # noqa: BLE001 - a reader must outlive any outage
                await self._read_failed(route, exc)
                continue
            self._outages.end(name, "reading")
            for _, entries in answer:
                # `>` hands out only entries never delivered before: attempt 1.
                await pipeline.deliver([_Entry(_text(i), fields, 1) for i, fields in entries])

    async def _reclaim(self, route: Route, pipeline: Pipeline[_Entry]) -> None:
        """Entries left pending for `BUS_REDELIVERY_AFTER_MS` (a retry, a dead consumer's),
        claimed to this consumer and handed to the pipeline with their delivery count."""
        client = self._broker.config.connection.client
        idle_ms = self._settings.redelivery_after_ms
        pause_s = min(1_000, max(100, idle_ms // 5)) / 1_000
        cursor = "0-0"
        while self._reading:
            try:
                cursor, entries, *_ = await client.xautoclaim(
                    route.topic,
                    route.group,
                    route.consumer,
                    idle_ms,
                    start_id=cursor,
                    count=self._settings.prefetch,
                )
                cursor = _text(cursor)
                # An entry trimmed while pending comes back without its fields (Redis 6).
                entries = [(_text(i), fields) for i, fields in entries if fields is not None]
                if entries:
                    await pipeline.deliver(await self._counted(client, route, entries))
            except Exception as exc:  # noqa: BLE001 - a reclaimer must outlive any outage
                await self._read_failed(route, exc)
                continue
            if cursor == "0-0" and not entries:
                await self._outages.wait(pause_s)  # went through the whole group: look again later

    @staticmethod
    async def _counted(
        client: Any, route: Route, entries: list[tuple[str, dict[bytes, bytes]]]
    ) -> list[_Entry]:
        """The entries with their delivery counts: XAUTOCLAIM counts the claim as a delivery,
        and the count lives in the pending entries list."""
        by_position = sorted((entry_id for entry_id, _ in entries), key=_position)
        pending = await client.xpending_range(
            route.topic,
            route.group,
            min=by_position[0],
            max=by_position[-1],
            count=len(entries) * 4,
        )
        counts = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        return [_Entry(entry_id, fields, counts.get(entry_id)) for entry_id, fields in entries]

    async def _read_failed(self, route: Route, exc: Exception) -> None:
        name = f"{route.topic}/{route.group}"
        if isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP"):
            # At the stream's start: what was published since it went is read. An ephemeral
            # group's events are live views: it starts at the end, as it did at first.
            at = "$" if route.ephemeral else "0"
            if not self._outages.ongoing(name):
                log.warning(
                    "redis-streams: group %s was gone (the stream deleted, or Redis restarted "
                    "empty); creating it again at %s",
                    name,
                    "the stream's end" if route.ephemeral else "the stream's start",
                )
            try:
                client = self._broker.config.connection.client
                await _create_group(client, route.topic, route.group, at)
                return
            except Exception as again:  # noqa: BLE001 - told once below, tried again later
                exc = again
        self._outages.begin(name, "cannot read", exc)
        await self._outages.wait()

    async def _publish(self, topic: str, body: bytes, key: str) -> None:
        self._published.add(topic)
        await self._pipelined.send("XADD", topic, "*", DATA_FIELD, body)

    async def _publish_dead_letter(self, group: str, body: bytes) -> None:
        await self._broker.publish(body, stream=names.dead_letters(group))
