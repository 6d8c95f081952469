"""Reading, removing and purging dead letters, for `orderbus dlq` and the services' admin
endpoints.

FastStream publishes and consumes; it cannot browse a queue or delete one entry of a stream,
so this module uses each broker's own client. Each entry is named by a `ref` the broker
understands: a stream entry id (Redis), a dead letter's id (RabbitMQ), `partition:offset`
(Kafka), a stream sequence (NATS) or a dead letter's id (memory, which only the process
running the bus can see).

An entry that is not a dead-letter record (anything can write to a stream or a queue) is
listed as malformed, with its raw bytes and why, so that one bad entry never breaks the
listing, and can be purged; it is never replayed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from bus import names
from bus.backends.kafka import bootstrap_servers
from bus.backends.nats import dead_letter_stream
from bus.retry import DeadLetter
from bus.settings import BusSettings

REDIS_DATA_FIELD = b"__data__"  # the field FastStream keeps a stream entry's body in


@dataclass(frozen=True)
class Stored:
    ref: str
    letter: DeadLetter
    malformed: str | None = None
    """Why the entry is not a dead-letter record; `letter` then only carries its raw bytes."""


def parse(ref: str, raw: bytes | str | None, group: str) -> Stored:
    """The entry `ref` of `dlq.<group>` as a dead letter, or as malformed, never an error."""
    body = raw.encode() if isinstance(raw, str) else raw or b""
    try:
        return Stored(ref, DeadLetter.model_validate_json(body))
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) or "-" for e in exc.errors()[:5])
        reason = f"not a dead-letter record ({fields or 'empty'})"
    digest = hashlib.sha256(body).hexdigest()
    letter = DeadLetter(
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"orderbus-dlq:{group}:{digest}"),
        topic="",
        group=group,
        consumer="",
        attempts=0,
        error=f"malformed entry: {reason}",
        envelope=body.decode("utf-8", errors="replace"),
    )
    return Stored(ref, letter, reason)


class DeadLetterStore(Protocol):
    removes_single_entries: bool

    async def list(self, group: str) -> list[Stored]: ...

    async def remove(self, group: str, refs: set[str]) -> int: ...

    async def purge(self, group: str) -> int: ...


def open_store(settings: BusSettings) -> DeadLetterStore:
    url = settings.resolved_url
    if settings.backend == "memory":
        return MemoryStore(url)
    if settings.backend.startswith("redis"):
        return RedisStore(url)
    if settings.backend == "rabbitmq":
        return RabbitStore(url)
    if settings.backend == "kafka":
        return KafkaStore(url)
    if settings.backend == "nats":
        return NatsStore(url)
    raise ValueError(f"no dead-letter store for backend {settings.backend!r}")


class MemoryStore:
    """The memory bus's dead letters: visible only inside the process that runs the bus."""

    removes_single_entries = True

    def __init__(self, url: str) -> None:
        self.url = url

    async def list(self, group: str) -> list[Stored]:
        from bus.backends import memory

        return [Stored(str(letter.id), letter) for letter in memory.dead_letters(self.url, group)]

    async def remove(self, group: str, refs: set[str]) -> int:
        from bus.backends import memory

        return memory.remove_dead_letters(self.url, group, refs)

    async def purge(self, group: str) -> int:
        return await self.remove(group, {s.ref for s in await self.list(group)})


class RedisStore:
    removes_single_entries = True

    def __init__(self, url: str) -> None:
        self.url = url

    async def list(self, group: str) -> list[Stored]:
        import redis.asyncio as redis

        client = redis.from_url(self.url)
        try:
            entries = await client.xrange(names.dead_letters(group)) or []
        finally:
            await client.aclose()
        return [
            parse(_text(ref), (fields or {}).get(REDIS_DATA_FIELD), group)
            for ref, fields in entries
            if ref is not None
        ]

    async def remove(self, group: str, refs: set[str]) -> int:
        import redis.asyncio as redis

        client = redis.from_url(self.url)
        try:
            return int(await client.xdel(names.dead_letters(group), *refs)) if refs else 0
        finally:
            await client.aclose()

    async def purge(self, group: str) -> int:
        return await self.remove(group, {s.ref for s in await self.list(group)})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RabbitStore:
    """A queue cannot be browsed: take each message once and put it back at the tail as a new
    one (confirmed before the original is acked), except the ones to remove. Requeueing them
    instead would count a delivery on every listing, and a quorum queue drops a message past
    its delivery limit (RabbitMQ 4's default is 20): listing would lose dead letters."""

    removes_single_entries = True

    def __init__(self, url: str) -> None:
        self.url = url

    async def _sweep(self, group: str, remove: set[str] | None) -> tuple[list[Stored], int]:
        import aio_pika
        import aiormq

        stored: list[Stored] = []
        removed = 0
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            try:
                queue = await channel.declare_queue(names.dead_letters(group), passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return [], 0  # nothing dead-lettered yet: the queue is declared on first use
            # Put back through the exchange the bus dead-letters to, never the default one,
            # which a service's own broker user may not write (see bus.backends.rabbitmq).
            exchange = await channel.declare_exchange(
                queue.name, aio_pika.ExchangeType.FANOUT, durable=True
            )
            await queue.bind(exchange)
            # Only what was there: letters dead-lettered meanwhile, and the ones put back, wait
            # behind them for the next listing.
            for _ in range(queue.declaration_result.message_count or 0):
                message = await queue.get(fail=False)
                if message is None:
                    break
                found = _rabbit_letter(message, group)
                if remove is not None and found.ref in remove:
                    removed += 1
                else:
                    stored.append(found)
                    await exchange.publish(_again(message), "", mandatory=True)
                await message.ack()
        return stored, removed

    async def list(self, group: str) -> list[Stored]:
        return (await self._sweep(group, None))[0]

    async def remove(self, group: str, refs: set[str]) -> int:
        return (await self._sweep(group, refs))[1]

    async def purge(self, group: str) -> int:
        return await self.remove(group, {s.ref for s in await self.list(group)})


def _again(message: Any) -> Any:
    """`message` as a new message with the same body and properties (`x-death` included)."""
    import aio_pika

    return aio_pika.Message(
        message.body,
        headers=message.headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )


def _rabbit_letter(message: Any, group: str) -> Stored:
    """The bus's own record, or one made from what RabbitMQ's net dead-lettered: the event as
    it was, with an `x-death` header saying where from and why."""
    deaths = message.headers.get("x-death") if message.headers else None
    if not deaths or not isinstance(deaths, list) or not isinstance(deaths[0], dict):
        found = parse("", message.body, group)
        return Stored(str(found.letter.id), found.letter, found.malformed)
    death = deaths[0]
    ident = uuid.uuid5(uuid.NAMESPACE_URL, f"{message.message_id}:{death.get('time')}")
    failed_at = death.get("time")
    if not isinstance(failed_at, datetime):
        failed_at = None
    event_id = None
    with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
        event_id = str(json.loads(message.body)["id"])[:36]
    count = message.headers.get("x-delivery-count", death.get("count", 1))
    letter = DeadLetter(
        id=ident,
        topic=str(death.get("exchange") or ""),
        group=group,
        consumer="",
        attempts=count if isinstance(count, int) else 1,
        error=f"dead-lettered by RabbitMQ: {death.get('reason')} (from {death.get('queue')})",
        failed_at=failed_at.replace(tzinfo=UTC) if failed_at else datetime.now(UTC),
        event_id=event_id,
        envelope=message.body.decode("utf-8", errors="replace"),
    )
    return Stored(str(ident), letter)


class KafkaStore:
    """A Kafka topic is an append-only log: nothing is deleted. Purging moves a cursor (the
    committed offsets of group `orderbus-dlq.<group>`) past what was there; listing starts at
    the cursor; the broker's retention removes the records in time."""

    removes_single_entries = False

    def __init__(self, url: str) -> None:
        self.servers = bootstrap_servers(url)

    @contextlib.asynccontextmanager
    async def _cursor(self, group: str) -> AsyncIterator[tuple[Any, list[Any]]]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

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


class NatsStore:
    removes_single_entries = True

    def __init__(self, url: str) -> None:
        self.url = url

    async def list(self, group: str) -> list[Stored]:
        import nats
        from nats.js.errors import NotFoundError

        client = await nats.connect(self.url)
        stream = dead_letter_stream(group)
        stored: list[Stored] = []
        try:
            js = client.jetstream()
            info = await js.stream_info(stream)
            # An empty stream reports first_seq 0, and asking for message 0 is a 400.
            for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
                with contextlib.suppress(NotFoundError):  # a gap: removed earlier
                    message = await js.get_msg(stream, seq)
                    stored.append(parse(str(seq), message.data, group))
        except NotFoundError:
            pass  # no stream: nothing dead-lettered yet
        finally:
            await client.drain()
        return stored

    async def remove(self, group: str, refs: set[str]) -> int:
        import nats

        client = await nats.connect(self.url)
        try:
            js = client.jetstream()
            for ref in refs:
                await js.delete_msg(dead_letter_stream(group), int(ref))
        finally:
            await client.drain()
        return len(refs)

    async def purge(self, group: str) -> int:
        return await self.remove(group, {s.ref for s in await self.list(group)})
