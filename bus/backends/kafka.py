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
|            | consumer waits, keeping key order); uncommitted offsets are re-read |
|            | after a crash |
| ordering | per key (the order id), across any number of consumers |

A process has one consumer per group, subscribed to every topic the group reads there: a
topic is not a group member of its own (see `KafkaBus._finish_registration`).

An ephemeral group (`Bus.subscribe`) starts at the topic's end. The bus does not delete it,
and need not: a group holds no events, only committed offsets, which Kafka drops once the
group has been empty for `offsets.retention.minutes` (7 days by default).
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any, ClassVar, Union
from urllib.parse import urlsplit

from aiokafka import ConsumerRebalanceListener, TopicPartition
from faststream import AckPolicy, StreamMessage
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker
from faststream.kafka.schemas import Topic
from faststream.kafka.subscriber.usecase import LogicSubscriber

from bus import names
from bus.backends._coalesced_acks import CoalescedAcks
from bus.backends._faststream import Adapt, FastStreamBus, OnMessage
from bus.port import Capabilities


def bootstrap_servers(url: str) -> list[str]:
    return urlsplit(url).netloc.split(",")


class KafkaBus(FastStreamBus[KafkaBroker]):
    name: ClassVar[str] = "kafka"
    capabilities: ClassVar[Capabilities] = Capabilities(
        fan_out=True,
        competing_consumers=True,
        offline_catch_up=True,
        redelivery=True,
        per_key_ordering=True,
        ordering="per key (the order id)",
    )

    def _create_broker(self, url: str, **common: Any) -> KafkaBroker:
        self._subscribers: list[LogicSubscriber[Any]] = []
        self._routes: dict[str, dict[str, OnMessage]] = {}
        self._grouped: set[str] = set()
        self._ephemeral: set[str] = set()
        self._declared: set[str] = set()
        self._failures: dict[tuple[str, int, int], int] = {}
        self._acks: list[CoalescedAcks[tuple[TopicPartition, int]]] = []
        # acks="all": the publish returns once every in-sync replica has the event.
        return KafkaBroker(bootstrap_servers(url), acks="all", **common)

    def _topic(self, topic: str) -> Topic:
        return Topic(topic, num_partitions=self._settings.kafka_partitions)

    def _register(
        self, topic: str, group: str, consumer: str, adapt: Adapt, *, ephemeral: bool
    ) -> None:
        if ephemeral:
            # Kafka has nothing to expire: see the module docstring.
            self._ephemeral.add(group)
        # Collected, not subscribed yet: `_finish_registration` makes one native consumer per
        # group for all of its topics (see there why).
        self._routes.setdefault(group, {})[topic] = adapt(self._attempt)
        self._declared.add(topic)

    def _finish_registration(self) -> None:
        """One Kafka consumer per group in this process, subscribed to all the group's topics.

        A consumer per topic would make every topic a member of its own in the group: each
        member that joins rebalances the whole group, and a service reading four topics with
        two replicas would rebalance eight times before it settles (minutes on Tansu, which
        holds each join). One member per process is also what Kafka clients usually are.
        """
        for group, routes in self._routes.items():
            if group in self._grouped:
                continue
            self._grouped.add(group)
            acks = _Commits(group)
            self._acks.append(acks)
            subscriber = self._broker.subscriber(
                *(self._topic(topic) for topic in routes),
                group_id=group,
                # The default, ACK_FIRST, commits before the handler runs: at-most-once.
                # MANUAL: `_committed` commits after it, coalescing the commits (see
                # _coalesced_acks), and seeks back so that a failed event is read again.
                ack_policy=AckPolicy.MANUAL,
                # A partition taken away is committed first: its next reader starts after
                # what this consumer handled, rather than handling it again.
                listener=acks,
                # A group with no committed offset starts at the beginning of the retained
                # topic rather than "now": what was published before its first start is kept.
                # Not an ephemeral group: it would replay the topic's whole retention.
                auto_offset_reset="latest" if group in self._ephemeral else "earliest",
                max_records=self._settings.prefetch,
            )
            subscriber(_committed(_by_topic(group, routes), acks))
            acks.subscriber = subscriber
            self._subscribers.append(subscriber)

    async def close(self) -> None:
        for acks in self._acks:
            await acks.drain()
        await super().close()

    async def _await_live(self) -> None:
        # Joining a group is asynchronous; until partitions are assigned, a peer joining next
        # would rebalance away work this consumer has not started. Return once assigned.
        deadline = time.monotonic() + self._settings.start_timeout_s
        while not all(self._assigned(s) for s in self._subscribers):
            if time.monotonic() > deadline:
                raise TimeoutError("no partitions assigned")
            await asyncio.sleep(0.05)

    @staticmethod
    def _assigned(subscriber: LogicSubscriber[Any]) -> bool:
        consumer = subscriber.consumer
        return consumer is not None and bool(consumer.assignment())

    async def _publish(self, topic: str, body: bytes, key: str) -> None:
        await self._ensure_topic(topic)
        try:
            await self._broker.publish(body, topic=topic, key=key.encode())
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

    # Kafka keeps no delivery count: a failed record is sought back and read again at the
    # same offset, so this process counts failures per offset. A crash forgets the count.
    @staticmethod
    def _offset(message: StreamMessage[Any]) -> tuple[str, int, int]:
        record = message.raw_message
        return (record.topic, record.partition, record.offset)

    async def _attempt(self, message: StreamMessage[Any]) -> int:
        return self._failures.get(self._offset(message), 0) + 1

    async def _retry_later(self, message: StreamMessage[Any], delay_s: float) -> None:
        key = self._offset(message)
        self._failures[key] = self._failures.get(key, 0) + 1
        # The partition waits: later events of the same order must not overtake this one.
        await asyncio.sleep(delay_s)
        raise NackMessage

    def _settled(self, message: StreamMessage[Any]) -> None:
        self._failures.pop(self._offset(message), None)


class _Commits(CoalescedAcks[tuple[TopicPartition, int]], ConsumerRebalanceListener):  # type: ignore[misc]
    """The offsets one group's consumer handled, committed a batch at a time."""

    def __init__(self, group: str) -> None:
        super().__init__(self._commit, f"group {group}")
        self.subscriber: LogicSubscriber[Any] | None = None

    async def _commit(self, handled: list[tuple[TopicPartition, int]]) -> None:
        consumer = self.subscriber.consumer if self.subscriber is not None else None
        if consumer is None:
            raise RuntimeError("the consumer has stopped")
        # The highest offset handled per partition, whatever the order within the batch.
        offsets: dict[TopicPartition, int] = {}
        for partition, offset in handled:
            offsets[partition] = max(offsets.get(partition, -1), offset + 1)
        await consumer.commit(offsets)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.flush()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


def _committed(on_message: OnMessage, commits: _Commits) -> OnMessage:
    """`on_message`, then its offset committed; or, if it is to be tried again, its partition
    sought back to it (the next read returns it again, and nothing after it is read first)."""

    @functools.wraps(on_message)  # its name, docstring and annotations feed AsyncAPI
    async def committed(message: StreamMessage[Any]) -> None:
        try:
            await on_message(message)
        except NackMessage:  # a retry, after its backoff
            await message.nack()
            return
        except Exception:  # an error of the bus's own (say, the DLQ unreachable): a retry
            await message.nack()
            raise
        record = message.raw_message
        await commits.add((TopicPartition(record.topic, record.partition), record.offset))

    return committed


def _by_topic(group: str, routes: dict[str, OnMessage]) -> OnMessage:
    """The callback of a consumer of several topics: each record goes to its topic's handler."""

    async def on_message(message: StreamMessage[Any]) -> None:
        await routes[message.raw_message.topic](message)

    # For the AsyncAPI document (FastStream reads the callback's docstring and annotations;
    # at run time neither is used): what the routes say, and any of their payloads.
    on_message.__name__ = on_message.__qualname__ = f"{group.replace('-', '_')}_consumer"
    on_message.__doc__ = " ".join(filter(None, (route.__doc__ for route in routes.values())))
    payloads = [route.__annotations__.get("event") for route in routes.values()]
    on_message.__annotations__ = {"return": None}
    if all(payloads):
        on_message.__annotations__["message"] = Union[tuple(payloads)]  # noqa: UP007
    return on_message
