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

A consumer reads with `XREADGROUP COUNT BUS_PREFETCH` and hands the whole read to the
delivery pipeline; what waits its turn there has its idle time reset (`XCLAIM ... JUSTID`,
which counts no delivery) every third of `BUS_REDELIVERY_AFTER_MS`, so only entries of a dead
consumer, or left pending for a retry, are reclaimed.

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

from bus import names
from bus.backends._coalesced_acks import CoalescedAcks
from bus.backends._faststream import FastStreamBus, documented
from bus.backends._redis import DATA_FIELD
from bus.backends._redis.format import PlainMessageFormat
from bus.backends._redis.pipeline import PipelinedPublisher
from bus.backends.redis_streams import BACKEND
from bus.codec import PoisonMessage
from bus.pipeline import Pipeline, Route
from bus.port import Capabilities

log = logging.getLogger(__name__)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _position(entry_id: str) -> tuple[int, ...]:
    """An entry id (`<ms>-<seq>`) as something that sorts as the stream does."""
    return tuple(int(part) for part in entry_id.split("-"))


async def _raw(message: Any) -> StreamMessage[Any]:
    """FastStream's parser, skipped: it decodes every entry's JSON to build a batch body the
    bus never reads. The pipeline reads the raw entry (`_Entry`)."""
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


def _after(entry_id: str) -> tuple[int, ...]:
    """The id right after `entry_id`: the oldest entry a group at that position still needs."""
    ms, seq = _position(entry_id)
    return ms, seq + 1


class RedisStreamsBus(FastStreamBus[RedisBroker]):
    """Adds what FastStream's stream subscriber lacks: removing the consumers that died."""

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
        topic, group, consumer = route.topic, route.group, route.consumer
        self._groups.append((topic, group, consumer))
        if route.ephemeral:
            self._ephemeral.append((topic, group))
        transport = _Transport(self, route)
        self._transports.append(transport)
        pipeline = self._pipeline(route, transport)
        idle_ms = self._settings.redelivery_after_ms
        # Without max_records XREADGROUP has no COUNT and one consumer takes the whole
        # backlog, leaving its peers idle; the bound is also our in-flight limit.
        reader = StreamSub(
            topic, group=group, consumer=consumer, max_records=self._settings.prefetch, batch=True
        )
        # FastStream's `min_idle_time` turns a subscriber into an XAUTOCLAIM loop that never
        # reads new entries, so reclaiming takes a second subscriber on the same group.
        reclaimer = StreamSub(
            topic,
            group=group,
            consumer=consumer,
            min_idle_time=idle_ms,
            polling_interval=min(1_000, max(100, idle_ms // 5)),
            batch=True,
        )
        # MANUAL: the pipeline acknowledges (coalesced XACKs, see _coalesced_acks), and
        # leaves a failed entry pending: the reclaimer's redelivery is the whole retry story.
        self._broker.subscriber(
            stream=reader, ack_policy=AckPolicy.MANUAL, parser=_raw, no_reply=True
        )(documented(self._read(pipeline), route))
        self._broker.subscriber(
            stream=reclaimer, ack_policy=AckPolicy.MANUAL, parser=_raw, no_reply=True
        )(documented(self._reclaimed(pipeline, topic, group), route))

    @staticmethod
    def _read(pipeline: Pipeline[_Entry]) -> Any:
        async def read(message: StreamMessage[Any]) -> None:
            raw = message.raw_message
            # XREADGROUP with `>` only hands out entries never delivered before: attempt 1.
            await pipeline.deliver(
                [
                    _Entry(_text(entry_id), fields, 1)
                    for entry_id, fields in zip(raw["message_ids"], raw["data"], strict=True)
                ]
            )

        return read

    def _reclaimed(self, pipeline: Pipeline[_Entry], topic: str, group: str) -> Any:
        async def reclaimed(message: StreamMessage[Any]) -> None:
            raw = message.raw_message
            ids = [_text(entry_id) for entry_id in raw["message_ids"]]
            if not ids:
                return
            # XAUTOCLAIM counts the claim as a delivery; the count lives in the PEL.
            by_position = sorted(ids, key=_position)
            pending = await self._broker.config.connection.client.xpending_range(
                topic, group, min=by_position[0], max=by_position[-1], count=len(ids) * 4
            )
            counts = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
            await pipeline.deliver(
                [
                    _Entry(entry_id, fields, counts.get(entry_id))
                    for entry_id, fields in zip(ids, raw["data"], strict=True)
                ]
            )

        return reclaimed

    async def _publish(self, topic: str, body: bytes, key: str) -> None:
        self._published.add(topic)
        await self._pipelined.send("XADD", topic, "*", DATA_FIELD, body)

    async def _publish_dead_letter(self, group: str, body: bytes) -> None:
        await self._broker.publish(body, stream=names.dead_letters(group))
