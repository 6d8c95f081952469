"""Kafka: a partitioned, replayable log; consumer groups split partitions.

URL: `kafka://host:port[,host:port...]` (default `kafka://127.0.0.1:9092`). The topic is a
Kafka topic created with `BUS_KAFKA_PARTITIONS` partitions; each event is keyed by its subject
(the order id), so one order's events share a partition; the group is the consumer group id
and the consumer name appears only in logs
(Kafka identifies members by a broker-assigned member id).

| feature | |
|---|---|
| fan-out across groups | yes: each consumer group reads the whole topic |
| competing consumers | yes, up to the partition count: each partition has one reader per group |
| offline catch-up | yes: a group resumes from its committed offset; a new group reads the |
|                  | retained topic from the start |
| redelivery | yes: a failed event is sought back and read again after a backoff (its |
|            | partition is paused meanwhile, keeping key order, while the others go |
|            | on); uncommitted offsets are re-read after a crash |
| ordering | per key (the order id), across any number of consumers |

A process has one consumer per group, subscribed to every topic the group reads there: a
topic is not a group member of its own (see `KafkaBus._finish_registration`).

An ephemeral group (`Bus.subscribe`) starts at the topic's end. The bus does not delete it,
and need not: a group holds no events, only committed offsets, which Kafka drops once the
group has been empty for `offsets.retention.minutes` (7 days by default).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, ClassVar, Union

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from faststream import AckPolicy, StreamMessage
from faststream.kafka import KafkaBroker
from faststream.kafka.schemas import Topic
from faststream.kafka.subscriber.usecase import LogicSubscriber

from bus import names
from bus.backends._coalesced_acks import CoalescedAcks
from bus.backends._faststream import FastStreamBus, OnMessage
from bus.backends.kafka import BACKEND, bootstrap_servers
from bus.codec import PoisonMessage
from bus.pipeline import Pipeline, Route
from bus.port import Capabilities

log = logging.getLogger(__name__)

Offset = tuple[str, int, int]


async def _raw(message: Any) -> StreamMessage[Any]:
    """FastStream's parser, skipped: it decodes every header as UTF-8 (one that is not made
    it raise, and the record was skipped) and builds a body the bus never reads. The pipeline
    reads the records themselves."""
    return StreamMessage(raw_message=message, body=b"")


class _Transport:
    redelivers_on_a_timer = False  # the client's heartbeats keep the group membership

    def __init__(self, bus: KafkaBus, route: Route, commits: _Commits) -> None:
        self._bus = bus
        self._route = route
        self._commits = commits

    def body(self, message: ConsumerRecord[Any, Any]) -> bytes:
        if message.value is None:
            raise PoisonMessage("a record without a value (a tombstone)")
        return bytes(message.value)

    async def attempt(self, message: ConsumerRecord[Any, Any]) -> int:
        return self._bus._failures.get(_offset(message), 0) + 1

    def scope(self, message: ConsumerRecord[Any, Any]) -> tuple[str, int]:
        return (message.topic, message.partition)

    async def ack(self, messages: Sequence[ConsumerRecord[Any, Any]]) -> None:
        for message in messages:
            self._bus._failures.pop(_offset(message), None)
            await self._commits.add(
                (TopicPartition(message.topic, message.partition), message.offset)
            )

    async def retry(self, message: ConsumerRecord[Any, Any], delay_s: float) -> None:
        key = _offset(message)
        self._bus._failures[key] = self._bus._failures.get(key, 0) + 1
        self._commits.read_again(message, delay_s)

    async def keep_alive(self, messages: Sequence[ConsumerRecord[Any, Any]]) -> None:
        return

    async def dead_letter(self, record: bytes) -> None:
        await self._bus._publish_dead_letter(self._route.group, record)

    async def release(self, messages: Sequence[Any]) -> None:
        return  # unacknowledged: the broker delivers them again


def _offset(message: ConsumerRecord[Any, Any]) -> Offset:
    return (message.topic, message.partition, message.offset)


class KafkaBus(FastStreamBus[KafkaBroker]):
    name: ClassVar[str] = BACKEND.name
    capabilities: ClassVar[Capabilities] = BACKEND.capabilities

    @staticmethod
    def publisher_arguments(topic: str) -> dict[str, Any]:
        return {"topic": topic}

    def _create_broker(self, url: str, **common: Any) -> KafkaBroker:
        self._subscribers: list[LogicSubscriber[Any]] = []
        self._by_group: dict[str, dict[str, Pipeline[ConsumerRecord[Any, Any]]]] = {}
        self._group_routes: dict[str, dict[str, Route]] = {}
        self._commits: dict[str, _Commits] = {}
        self._grouped: set[str] = set()
        self._ephemeral: set[str] = set()
        self._declared: set[str] = set()
        # Kafka keeps no delivery count: a failed record is sought back and read again at
        # the same offset, so this process counts failures per offset. A crash forgets it.
        self._failures: dict[Offset, int] = {}
        # acks="all": the publish returns once every in-sync replica has the event.
        return KafkaBroker(bootstrap_servers(url), acks="all", **common)

    def _topic(self, topic: str) -> Topic:
        return Topic(topic, num_partitions=self._settings.kafka_partitions)

    def _register(self, route: Route) -> None:
        if route.ephemeral:
            # Kafka has nothing to expire: see the module docstring.
            self._ephemeral.add(route.group)
        commits = self._commits.setdefault(route.group, _Commits(route.group))
        transport = _Transport(self, route, commits)
        # Collected, not subscribed yet: `_finish_registration` makes one native consumer per
        # group for all of its topics (see there why).
        self._by_group.setdefault(route.group, {})[route.topic] = self._pipeline(route, transport)
        self._group_routes.setdefault(route.group, {})[route.topic] = route
        self._declared.add(route.topic)

    def _finish_registration(self) -> None:
        """One Kafka consumer per group in this process, subscribed to all the group's topics.

        A consumer per topic would make every topic a member of its own in the group: each
        member that joins rebalances the whole group, and a service reading four topics with
        two replicas would rebalance eight times before it settles (minutes on Tansu, which
        holds each join). One member per process is also what Kafka clients usually are.
        """
        for group, pipelines in self._by_group.items():
            if group in self._grouped:
                continue
            self._grouped.add(group)
            commits = self._commits[group]
            subscriber = self._broker.subscriber(
                *(self._topic(topic) for topic in pipelines),
                group_id=group,
                # Records as fetched (getmany, up to BUS_PREFETCH): the pipeline handles them.
                batch=True,
                # The default, ACK_FIRST, commits before the handler runs: at-most-once.
                # MANUAL: the pipeline commits after it, coalescing the commits (see
                # _coalesced_acks), and seeks back so that a failed event is read again.
                ack_policy=AckPolicy.MANUAL,
                # A partition taken away is committed first: its next reader starts after
                # what this consumer handled, rather than handling it again.
                listener=commits,
                # A group with no committed offset starts at the beginning of the retained
                # topic rather than "now": what was published before its first start is kept.
                # Not an ephemeral group: it would replay the topic's whole retention.
                auto_offset_reset="latest" if group in self._ephemeral else "earliest",
                max_records=self._settings.prefetch,
                parser=_raw,
                no_reply=True,  # a record's reply-to header names no destination of ours
            )
            subscriber(_by_topic(group, pipelines, self._group_routes[group]))
            commits.subscriber = subscriber
            self._subscribers.append(subscriber)

    async def _stop_fetching(self) -> None:
        # Paused, not stopped: stopping a consumer leaves its group, which commits through
        # the rebalance listener while the pipelines may still be settling.
        for subscriber in self._subscribers:
            consumer = subscriber.consumer
            if consumer is not None:
                consumer.pause(*consumer.assignment())

    async def _drain(self) -> None:
        for commits in self._commits.values():
            commits.stop_reading_again()
            await commits.drain()

    async def _await_live(self) -> None:
        # Joining a group is asynchronous; until partitions are assigned, a peer joining next
        # would rebalance away work this consumer has not started. Return once assigned.
        deadline = asyncio.get_running_loop().time() + self._settings.start_timeout_s
        while not all(self._assigned(s) for s in self._subscribers):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("no partitions assigned")
            await asyncio.sleep(0.05)

    @staticmethod
    def _assigned(subscriber: LogicSubscriber[Any]) -> bool:
        consumer = subscriber.consumer
        return consumer is not None and bool(consumer.assignment())

    async def _publish(self, topic: str, body: bytes, key: str) -> None:
        await (await self._start_publish(topic, body, key))

    def _producer(self) -> Any:
        """aiokafka's producer under FastStream's. Events are sent on it directly: FastStream's
        publish builds a command, a correlation id and headers per record and runs its
        middlewares, which cost more than aiokafka's own send (docs/performance.md,
        "Publishing without FastStream's chain"). Dead letters still go through FastStream."""
        fast: Any = self._broker.config.producer
        return fast._producer.producer

    confirms_apart: ClassVar[bool] = True

    async def _start_publish(self, topic: str, body: bytes, key: str) -> Awaitable[object]:
        """The record appended to the producer's batch of its partition (in call order);
        awaiting the answer sends the batch, one request per partition for a `publish_many`."""
        await self._ensure_topic(topic)
        try:
            sent = await self._producer().send(topic, value=body, key=key.encode())
        except Exception:
            self._forget(topic)
            raise
        return self._confirmed(topic, sent)

    async def _confirmed(self, topic: str, sent: Awaitable[object]) -> None:
        try:
            await sent
        except Exception:
            self._forget(topic)
            raise

    async def _ensure_topic(self, topic: str) -> None:
        if topic in self._declared:
            return
        # Auto-created topics get the broker's default partition count (often 1), which caps
        # competing consumers at one: create it with ours before the first publish.
        # FastStream reports a failure (already-exists is success) rather than raising it.
        [result] = await self._broker.config.admin.create_topics([self._topic(topic)])
        if result.error is not None:
            raise result.error
        self._declared.add(topic)

    def _forget(self, topic: str) -> None:
        # A failed publish may mean the broker lost the topic (a restart of a broker without
        # storage, an operator's delete): declare it again before the caller's next attempt.
        self._declared.discard(topic)

    async def _publish_dead_letter(self, group: str, body: bytes) -> None:
        topic = names.dead_letters(group)
        await self._ensure_topic(topic)
        try:
            await self._broker.publish(body, topic=topic)
        except Exception:
            self._forget(topic)
            raise


class _Commits(CoalescedAcks[tuple[TopicPartition, int]], ConsumerRebalanceListener):  # type: ignore[misc]
    """The offsets one group's consumer handled, committed a batch at a time; and the
    partitions paused until a failed record of theirs is read again."""

    def __init__(self, group: str) -> None:
        super().__init__(self._commit, f"group {group}")
        self.subscriber: LogicSubscriber[Any] | None = None
        self._timers: set[asyncio.TimerHandle] = set()

    @property
    def _consumer(self) -> Any:
        consumer = self.subscriber.consumer if self.subscriber is not None else None
        if consumer is None:
            raise RuntimeError("the consumer has stopped")
        return consumer

    async def _commit(self, handled: list[tuple[TopicPartition, int]]) -> None:
        # The highest offset handled per partition, whatever the order within the batch.
        offsets: dict[TopicPartition, int] = {}
        for partition, offset in handled:
            offsets[partition] = max(offsets.get(partition, -1), offset + 1)
        await self._consumer.commit(offsets)

    def read_again(self, record: ConsumerRecord[Any, Any], delay_s: float) -> None:
        """Pause the record's partition (later events of the same order must not overtake
        it; the other partitions go on) and, after `delay_s`, read it again from there."""
        partition = TopicPartition(record.topic, record.partition)
        self._consumer.pause(partition)
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle

        def resume() -> None:
            self._timers.discard(timer)
            try:
                consumer = self._consumer
                consumer.seek(partition, record.offset)
                consumer.resume(partition)
            except Exception:  # revoked meanwhile: its next reader starts at the commit
                log.debug("cannot read %s again here", partition, exc_info=True)

        timer = loop.call_later(delay_s, resume)
        self._timers.add(timer)

    def stop_reading_again(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.flush()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


def _by_topic(
    group: str,
    pipelines: dict[str, Pipeline[ConsumerRecord[Any, Any]]],
    routes: dict[str, Route],
) -> OnMessage:
    """The callback of a consumer of several topics: each topic's records go to its
    pipeline, in the order fetched."""

    async def on_message(message: StreamMessage[Any]) -> None:
        by_topic: dict[str, list[ConsumerRecord[Any, Any]]] = {}
        for record in message.raw_message:
            by_topic.setdefault(record.topic, []).append(record)
        await asyncio.gather(*(pipelines[t].deliver(rs) for t, rs in by_topic.items()))

    # For the AsyncAPI document (FastStream reads the callback's docstring and annotations;
    # at run time neither is used): what the routes say, and any of their payloads.
    on_message.__name__ = on_message.__qualname__ = f"{group.replace('-', '_')}_consumer"
    on_message.__doc__ = " ".join(filter(None, (r.handler.__doc__ for r in routes.values())))
    payloads = [
        getattr(route.handler, "__annotations__", {}).get("event") for route in routes.values()
    ]
    on_message.__annotations__ = {"return": None}
    if all(payloads):
        on_message.__annotations__["message"] = Union[tuple(payloads)]  # noqa: UP007
    return on_message
