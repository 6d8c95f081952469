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

The stream is not trimmed: nothing can drop an entry a group has not read (trim it yourself,
below the oldest entry every group has acknowledged, if it grows too long). Consumers that
died are removed from their group once idle for `BUS_DEAD_CONSUMER_AFTER_S` with nothing
pending.

An ephemeral group (`Bus.subscribe`) is destroyed (`XGROUP DESTROY`) when its bus closes.
Redis has no expiry for a group, so one whose process died without closing stays; it holds
no entries (a group is a read position and at most `BUS_PREFETCH` pending ids), so it grows
nothing, and `XGROUP DESTROY <topic> <group>` removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import redis.asyncio as redis
from faststream import AckPolicy, StreamMessage
from faststream.exceptions import NackMessage
from faststream.redis import RedisBroker, StreamSub

from bus import names
from bus.backends._coalesced_acks import CoalescedAcks
from bus.backends._faststream import Adapt, FastStreamBus, OnMessage
from bus.backends._redis_format import PlainMessageFormat
from bus.backends._redis_pipeline import PipelinedPublisher
from bus.port import Capabilities

log = logging.getLogger(__name__)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisStreamsBus(FastStreamBus[RedisBroker]):
    """Adds what FastStream's stream subscriber lacks: removing the consumers that died."""

    name: ClassVar[str] = "redis-streams"
    capabilities: ClassVar[Capabilities] = Capabilities(
        fan_out=True,
        competing_consumers=True,
        offline_catch_up=True,
        redelivery=True,
        per_key_ordering=False,
        ordering="per stream, with one consumer",
    )

    def _create_broker(self, url: str, **common: Any) -> RedisBroker:
        self._groups: list[tuple[str, str, str]] = []
        self._ephemeral: list[tuple[str, str]] = []  # (topic, group)
        self._sweeper: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        # Entries of ours the keeper must leave alone: being handled (or waiting for the
        # subscription's lock, which `_still_waiting` covers), or left pending for a retry.
        self._in_hand: dict[tuple[str, str], set[str]] = {}
        self._awaiting_retry: dict[tuple[str, str], set[str]] = {}
        self._acks: dict[tuple[str, str], CoalescedAcks[str]] = {}
        # Concurrent publishes share a round trip (see _redis_pipeline for why and numbers).
        self._pipelined = PipelinedPublisher(
            lambda: self._broker.config.connection.client.pipeline(transaction=False)
        )
        return RedisBroker(url, message_format=PlainMessageFormat, **common)

    async def start(self) -> None:
        await super().start()
        if self._groups:
            self._sweeper = asyncio.create_task(self._sweep_dead_consumers())
            self._keeper = asyncio.create_task(self._keep_fetched_entries())

    async def close(self) -> None:
        self._started = False  # their loops end at their next round
        tasks = [task for task in (self._sweeper, self._keeper) if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a cancellation that lands inside a redis-py call can come out as a
            # TimeoutError, which these loops log and go on from. Waiting for them without a
            # bound hung `orderbus demo` (2 runs in 15); they hold nothing worth waiting for.
            await asyncio.wait(tasks, timeout=2)
        for acks in self._acks.values():
            await acks.drain()
        await super().close()  # in-flight entries are acknowledged before their group goes
        if self._ephemeral:
            await self._destroy_ephemeral_groups()

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

    async def _keep_fetched_entries(self) -> None:
        """FastStream hands a fetched batch (XREADGROUP COUNT prefetch) to the handler one
        entry at a time, so the last entries wait behind slow handlers, pending and idle: the
        reclaimer would take them as abandoned and count a delivery. Every third of the idle
        time, reset the idle time of the entries of ours that merely wait."""
        interval_ms = self._settings.redelivery_after_ms // 3
        client = self._broker.config.connection.client
        clock = asyncio.get_running_loop().time
        started = clock()
        while self._started:
            await asyncio.sleep(interval_ms / 1_000)
            # Idle since before this process started: left by an earlier process of the same
            # consumer name (killed, then restarted), to be reclaimed, never kept.
            uptime_ms = (clock() - started) * 1_000
            for topic, group, me in self._groups:
                try:
                    pending = await client.xpending_range(
                        topic, group, min="-", max="+", count=1_000, consumername=me
                    )
                    ours = {_text(p["message_id"]): p["time_since_delivered"] for p in pending}
                    # Forget retries that were dead-lettered or taken by another consumer.
                    retries = self._awaiting_retry[topic, group]
                    retries.intersection_update(ours)
                    busy = self._in_hand[topic, group] | retries
                    waiting = [
                        entry_id
                        for entry_id, idle in ours.items()
                        if interval_ms <= idle < uptime_ms and entry_id not in busy
                    ]
                    if waiting:
                        # JUSTID: reset the idle time without counting a delivery.
                        await client.xclaim(topic, group, me, 0, waiting, justid=True)
                except Exception:  # a missed round costs a redelivery at most
                    log.debug("cannot keep entries of %s/%s", topic, group, exc_info=True)

    async def _sweep_dead_consumers(self) -> None:
        after_ms = self._settings.dead_consumer_after_s * 1_000
        client = self._broker.config.connection.client
        while self._started:
            await asyncio.sleep(max(0.5, min(60.0, after_ms / 2_000)))
            for topic, group, me in self._groups:
                try:
                    consumers = await client.xinfo_consumers(topic, group)
                except Exception:
                    log.debug("cannot list consumers of %s/%s", topic, group, exc_info=True)
                    continue
                for consumer in consumers:
                    name = _text(consumer["name"])
                    if name != me and consumer["pending"] == 0 and consumer["idle"] > after_ms:
                        await client.xgroup_delconsumer(topic, group, name)
                        log.info("removed dead consumer %s from %s/%s", name, topic, group)

    def _register(
        self, topic: str, group: str, consumer: str, adapt: Adapt, *, ephemeral: bool
    ) -> None:
        self._groups.append((topic, group, consumer))
        self._in_hand[topic, group] = set()
        self._awaiting_retry[topic, group] = set()
        self._acks[topic, group] = CoalescedAcks(self._xack(topic, group), f"{topic}/{group}")
        if ephemeral:
            self._ephemeral.append((topic, group))
        idle_ms = self._settings.redelivery_after_ms
        # Without max_records XREADGROUP has no COUNT and one consumer takes the whole
        # backlog, leaving its peers idle; the bound is also our in-flight limit.
        reader = StreamSub(
            topic, group=group, consumer=consumer, max_records=self._settings.prefetch
        )
        # FastStream's `min_idle_time` turns a subscriber into an XAUTOCLAIM loop that never
        # reads new entries, so reclaiming takes a second subscriber on the same group.
        reclaimer = StreamSub(
            topic,
            group=group,
            consumer=consumer,
            min_idle_time=idle_ms,
            polling_interval=min(1_000, max(100, idle_ms // 5)),
        )
        # MANUAL: `_tracked` acknowledges, coalescing the XACKs (see _coalesced_acks), and
        # leaves a failed entry pending: the reclaimer's redelivery is the whole retry story.
        self._broker.subscriber(stream=reader, ack_policy=AckPolicy.MANUAL)(
            self._tracked(topic, group, adapt(self._first_attempt))
        )
        self._broker.subscriber(stream=reclaimer, ack_policy=AckPolicy.MANUAL)(
            self._tracked(topic, group, adapt(self._pending_attempt(topic, group)))
        )

    def _tracked(self, topic: str, group: str, on_message: OnMessage) -> OnMessage:
        """`on_message`, its entry marked as in hand meanwhile (see `_keep_fetched_entries`),
        then acknowledged, or left pending for the reclaimer if it is to be tried again."""
        in_hand, retries = self._in_hand[topic, group], self._awaiting_retry[topic, group]
        acks = self._acks[topic, group]

        @functools.wraps(on_message)  # its name, docstring and annotations feed AsyncAPI
        async def tracked(message: StreamMessage[Any]) -> None:
            (entry_id,) = map(_text, message.raw_message["message_ids"])
            retries.discard(entry_id)
            in_hand.add(entry_id)
            try:
                await on_message(message)
            except NackMessage:  # a retry
                retries.add(entry_id)
                return
            except Exception:  # an error of the bus's own (say, the DLQ unreachable): a retry
                retries.add(entry_id)
                raise
            finally:
                in_hand.discard(entry_id)
            await acks.add(entry_id)  # handled or dead-lettered

        return tracked

    def _xack(self, topic: str, group: str) -> Callable[[list[str]], Awaitable[None]]:
        retries = self._awaiting_retry[topic, group]

        async def xack(entry_ids: list[str]) -> None:
            try:
                await self._broker.config.connection.client.xack(topic, group, *entry_ids)
            except Exception:
                # Still pending: let the reclaimer deliver them again, not the keeper hold them.
                retries.update(entry_ids)
                raise

        return xack

    async def _first_attempt(self, message: StreamMessage[Any]) -> int:
        return 1  # XREADGROUP with `>` only hands out entries never delivered before

    def _pending_attempt(self, topic: str, group: str) -> Any:
        async def attempt(message: StreamMessage[Any]) -> int | None:
            # XAUTOCLAIM counts the claim as a delivery; the count lives in the PEL.
            (entry_id,) = message.raw_message["message_ids"]
            pending = await self._broker.config.connection.client.xpending_range(
                topic, group, min=entry_id, max=entry_id, count=1
            )
            return int(pending[0]["times_delivered"]) if pending else None

        return attempt

    redelivers_on_a_timer: ClassVar[bool] = True

    async def _still_waiting(
        self, message: StreamMessage[Any], topic: str, group: str, consumer: str
    ) -> None:
        # FastStream has no "in progress" for streams. XCLAIM to ourselves resets the entry's
        # idle time, and with JUSTID it does not count a delivery.
        await self._broker.config.connection.client.xclaim(
            topic, group, consumer, 0, message.raw_message["message_ids"], justid=True
        )

    async def _publish(self, topic: str, body: bytes, key: str) -> None:
        await self._pipelined.publish(
            lambda pipe: self._broker.publish(body, stream=topic, pipeline=pipe)
        )

    async def _publish_dead_letter(self, group: str, body: bytes) -> None:
        await self._broker.publish(body, stream=names.dead_letters(group))

    async def _retry_later(self, message: StreamMessage[Any], delay_s: float) -> None:
        # Leave the entry pending: the reclaimer takes it once it has been idle for
        # BUS_REDELIVERY_AFTER_MS (a fixed delay: XAUTOCLAIM has one idle time per call).
        raise NackMessage
