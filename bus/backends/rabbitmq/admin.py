"""RabbitMQ's admin side: ready counts by passive declares, dead letters swept from their
queue (a queue cannot be browsed), topology deleted queue by queue."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq

from bus import names
from bus.dead_letters import DeadLetter, Stored, parse
from bus.descriptor import Admin
from bus.probes import Backlog, BaseProbe


class RabbitProbe(BaseProbe):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.connection: Any = None

    async def _ready(self, queue: str) -> int | None:

        if self.connection is None or self.connection.is_closed:
            self.connection = await aio_pika.connect(self.url, timeout=5)
        # A passive declare answers with the queue's ready-message count; for a queue that
        # does not exist the broker closes the channel, so each question gets its own.
        async with self.connection.channel() as channel:
            try:
                declared = await channel.declare_queue(queue, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return None
            count = declared.declaration_result.message_count
            return int(count) if count is not None else None

    async def backlog(self, topic: str, group: str) -> Backlog:
        return Backlog(
            lag=await self._ready(names.group_queue(topic, group)),
            dead_letters=await self._ready(names.dead_letters(group)) or 0,
        )

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()


class RabbitStore:
    """A queue cannot be browsed: take each message once and put it back at the tail as a new
    one (confirmed before the original is acked), except the ones to remove. Requeueing them
    instead would count a delivery on every listing, and a quorum queue drops a message past
    its delivery limit (RabbitMQ 4's default is 20): listing would lose dead letters."""

    removes_single_entries = True

    def __init__(self, url: str) -> None:
        self.url = url

    async def _sweep(self, group: str, remove: set[str] | None) -> tuple[list[Stored], int]:

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


async def remove_topology(url: str, topics: Sequence[str], groups: Sequence[str]) -> None:
    """Each group's queue of each topic, the topics' exchanges, the dead-letter queues and
    the exchanges routing to them."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for topic in topics:
            for group in groups:
                await channel.queue_delete(names.group_queue(topic, group))
            await channel.exchange_delete(topic)
        for group in groups:
            dlq = names.dead_letters(group)
            await channel.queue_delete(dlq)
            await channel.exchange_delete(dlq)


ADMIN = Admin(probe=RabbitProbe, dead_letters=RabbitStore, remove_topology=remove_topology)
