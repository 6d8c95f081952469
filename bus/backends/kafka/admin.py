"""Kafka's admin side: lag from committed offsets, dead letters read past a cursor (a log
deletes nothing), topics deleted where the broker allows it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bus import names
from bus.backends.kafka import bootstrap_servers
from bus.dead_letters import Stored, parse
from bus.descriptor import Admin
from bus.probes import Backlog, BaseProbe


class KafkaProbe(BaseProbe):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.admin: Any = None
        self.consumer: Any = None

    async def _clients(self) -> tuple[Any, Any]:

        if self.admin is None:
            servers = bootstrap_servers(self.url)
            admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=5_000)
            consumer = AIOKafkaConsumer(bootstrap_servers=servers, request_timeout_ms=5_000)
            await admin.start()
            try:
                await consumer.start()
            except Exception:
                await admin.close()
                raise
            self.admin, self.consumer = admin, consumer
        return self.admin, self.consumer

    async def _lag(self, topic: str, group: str) -> int | None:
        """Records of `topic` past `group`'s committed offsets (from the start where it has
        none, as the bus's groups begin at the earliest offset)."""

        admin, consumer = await self._clients()
        # Asked afresh each time: the consumer's cached metadata never learns of a topic
        # created after it started (a first dead letter, say). All topics, not this one by
        # name: a metadata request naming a missing topic may have the broker create it.
        described = [t for t in await admin.describe_topics() if t["topic"] == topic]
        if not described or described[0]["error_code"] != 0:
            return None
        partitions = [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]
        end = await consumer.end_offsets(partitions)
        start = await consumer.beginning_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        lag = 0
        for partition in partitions:
            done = committed.get(partition)
            position = done.offset if done is not None and done.offset >= 0 else start[partition]
            lag += max(0, end[partition] - position)
        return lag

    async def backlog(self, topic: str, group: str) -> Backlog:
        dead = await self._lag(names.dead_letters(group), f"orderbus-dlq.{group}")
        return Backlog(lag=await self._lag(topic, group), dead_letters=dead or 0)

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.admin is not None:
            await self.admin.close()


class KafkaStore:
    """A Kafka topic is an append-only log: nothing is deleted. Purging moves a cursor (the
    committed offsets of group `orderbus-dlq.<group>`) past what was there; listing starts at
    the cursor; the broker's retention removes the records in time."""

    removes_single_entries = False

    def __init__(self, url: str) -> None:
        self.servers = bootstrap_servers(url)

    @contextlib.asynccontextmanager
    async def _cursor(self, group: str) -> AsyncIterator[tuple[Any, list[Any]]]:

        topic = names.dead_letters(group)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.servers,
            group_id=f"orderbus-dlq.{group}",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
            ]
            if partitions:
                consumer.assign(partitions)
                for partition in partitions:
                    committed = await consumer.committed(partition)
                    if committed is None:
                        await consumer.seek_to_beginning(partition)
                    else:
                        consumer.seek(partition, committed)
            yield consumer, partitions
        finally:
            await consumer.stop()

    async def list(self, group: str) -> list[Stored]:
        stored: list[Stored] = []
        async with self._cursor(group) as (consumer, partitions):
            end = await consumer.end_offsets(partitions) if partitions else {}
            for partition in partitions:
                while await consumer.position(partition) < end[partition]:
                    batch = await consumer.getmany(partition, timeout_ms=1_000)
                    for record in batch.get(partition, []):
                        ref = f"{record.partition}:{record.offset}"
                        stored.append(parse(ref, record.value, group))
        return stored

    async def remove(self, group: str, refs: set[str]) -> int:
        return 0  # see removes_single_entries: replaying twice is harmless (the inboxes)

    async def purge(self, group: str) -> int:
        count = len(await self.list(group))
        async with self._cursor(group) as (consumer, partitions):
            if partitions:
                await consumer.commit(await consumer.end_offsets(partitions))
        return count


async def remove_topology(url: str, topics: Sequence[str], groups: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(url))
    await admin.start()
    try:
        with contextlib.suppress(Exception):  # not every Kafka-protocol broker deletes
            await admin.delete_topics([*topics, *(names.dead_letters(g) for g in groups)])
    finally:
        await admin.close()


ADMIN = Admin(probe=KafkaProbe, dead_letters=KafkaStore, remove_topology=remove_topology)
