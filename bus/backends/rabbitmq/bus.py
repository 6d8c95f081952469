"""RabbitMQ: exchanges fan out, queues hold work for competing consumers.

URL: `amqp://user:password@host:port/vhost` (default `amqp://guest:guest@127.0.0.1:5672/`).
The topic is a durable fanout exchange; each group consumes its own durable quorum queue
`<topic>.<group>` bound to it.

| feature | |
|---|---|
| fan-out across groups | yes: the exchange copies each event to every group's queue |
| competing consumers | yes: consumers on one queue share it, `BUS_PREFETCH` unacked each |
| offline catch-up | yes: the queue keeps events while its consumers are away |
| redelivery | yes: a nacked event, or one unacked when its channel closes, returns to the queue |
| ordering | per queue, with one consumer |

Quorum queues rather than classic ones: they are replicated, durable by construction, and
count deliveries (`x-delivery-count`), which the retry policy relies on.

Dead letters are written by the bus (with the error and its traceback). Under that, each
group queue has RabbitMQ's own net: `x-delivery-limit` above any `BUS_MAX_ATTEMPTS`, and
a dead-letter exchange routing to the same `dlq.<group>`. It only acts when the bus cannot,
for instance when publishing the dead letter itself keeps failing; such an entry carries
RabbitMQ's `x-death` header instead of an error. Both go through the fanout exchange
`dlq.<group>`, bound to the queue of that name, never the default exchange: the right to
publish there (or to name it as a queue's dead-letter exchange) is the right to put a message
in every queue, so a broker user per service could not be kept to its own topics.

An ephemeral group (`Bus.subscribe`) gets a quorum queue with `x-expires`
(`BUS_EPHEMERAL_EXPIRY_S`): RabbitMQ deletes it, with what it holds, once it has had no
consumer that long, so a departed instance's queue stops filling: RabbitMQ's own advice for
unused durable queues. Quorum still, for its delivery count, which bounds retries (a classic
queue keeps none). Not an exclusive queue: a restarted instance of the same id would be
refused (`RESOURCE_LOCKED`) until RabbitMQ noticed the old connection dead. Not a non-durable
shared one: deprecated, refused by default since RabbitMQ 4.3. No dead-letter net and no
`dlq.<group>` for it: nothing of an instance outlives the expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    ConsumerTag,
)
from faststream import AckPolicy, StreamMessage
from faststream.rabbit import (
    Channel,
    ExchangeType,
    QueueType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
)
from faststream.rabbit.schemas.queue import QuorumQueueArgs

from bus import names
from bus.backends._faststream import FastStreamBus, documented
from bus.backends.rabbitmq import BACKEND
from bus.pipeline import Pipeline, Route
from bus.port import Capabilities, NotPublished
from bus.settings import MAX_ATTEMPTS_LIMIT

log = logging.getLogger("bus")

NET_DELIVERY_LIMIT = MAX_ATTEMPTS_LIMIT + 2
"""Deliveries after which RabbitMQ dead-letters a message itself. Above any
`BUS_MAX_ATTEMPTS`, so the net acts only when the bus could not, and fixed, so that changing
the setting never changes a queue's arguments (which RabbitMQ refuses)."""


CANCEL_TIMEOUT_S = 5.0
"""The most closing waits for the broker to confirm that one consumer is cancelled."""


def _exchange(topic: str) -> RabbitExchange:
    return RabbitExchange(topic, type=ExchangeType.FANOUT, durable=True)


def _dead_letter_queue(group: str) -> RabbitQueue:
    return RabbitQueue(names.dead_letters(group), queue_type=QueueType.QUORUM, durable=True)


def _dead_letter_exchange(group: str) -> RabbitExchange:
    return RabbitExchange(names.dead_letters(group), type=ExchangeType.FANOUT, durable=True)


async def _raw(message: AbstractIncomingMessage) -> StreamMessage[AbstractIncomingMessage]:
    """FastStream's parser, skipped: the pipeline reads the message itself."""
    return StreamMessage(raw_message=message, body=b"")


class _Transport:
    redelivers_on_a_timer = False  # an unacknowledged message returns only with its channel

    def __init__(self, bus: RabbitMQBus, route: Route) -> None:
        self._bus = bus
        self._route = route
        self._held: set[int] = set()
        """Delivery tags held unacknowledged for a retry's delay."""

    def body(self, message: AbstractIncomingMessage) -> bytes:
        return bytes(message.body)

    async def attempt(self, message: AbstractIncomingMessage) -> int:
        # Quorum queues count earlier deliveries in `x-delivery-count` (absent on the first).
        count = (message.headers or {}).get("x-delivery-count", 0)
        return (int(count) if isinstance(count, int | str) else 0) + 1

    def scope(self, message: AbstractIncomingMessage) -> None:
        return None

    async def ack(self, messages: Sequence[AbstractIncomingMessage]) -> None:
        last = messages[-1].delivery_tag if messages else None
        if (
            last is not None
            and len(messages) > 1
            and all(tag > last for tag in self._held)
            and all(m.channel is messages[-1].channel for m in messages)
        ):
            # One frame for the lot: `multiple` acknowledges every tag up to the last on the
            # channel, which is this subscription's own (`_await_live`). The pipeline settles
            # in delivery order, so below the last nothing else is unacknowledged but a retry
            # held back, and with one below it each is acknowledged on its own.
            await messages[-1].ack(multiple=True)
            return
        for message in messages:
            await message.ack()

    async def retry(self, message: AbstractIncomingMessage, delay_s: float) -> None:
        # Held unacknowledged for the delay (the prefetch window still lets this consumer
        # take others), then requeued: RabbitMQ has no delayed redelivery of its own.
        tag = message.delivery_tag
        if tag is not None:
            self._held.add(tag)
        self._bus._later(delay_s, message, lambda: self._held.discard(tag or 0))

    async def keep_alive(self, messages: Sequence[AbstractIncomingMessage]) -> None:
        return

    async def dead_letter(self, record: bytes) -> None:
        await self._bus._publish_dead_letter(self._route.group, record)

    async def release(self, messages: Sequence[Any]) -> None:
        return  # unacknowledged: the broker delivers them again


class RabbitMQBus(FastStreamBus[RabbitBroker]):
    name: ClassVar[str] = BACKEND.name
    capabilities: ClassVar[Capabilities] = BACKEND.capabilities

    @staticmethod
    def publisher_arguments(topic: str) -> dict[str, Any]:
        return {"queue": "", "exchange": _exchange(topic)}

    def _create_broker(self, url: str, **common: Any) -> RabbitBroker:
        # (topic, group, queue, ephemeral)
        self._group_queues: list[tuple[str, str, RabbitQueue, bool]] = []
        self._retries: set[asyncio.Task[None]] = set()
        # (topic, queue, pipeline), and what consumes them once started
        self._consumers: list[tuple[str, RabbitQueue, Pipeline[AbstractIncomingMessage]]] = []
        self._consuming: list[tuple[AbstractQueue, ConsumerTag]] = []
        self._dead_letter_routes: set[str] = set()  # groups whose dlq exchange is bound
        self._ping_channel: AbstractChannel | None = None
        self._ping_lock = asyncio.Lock()  # one readiness channel, however many checks at once
        self._ping_closing: set[asyncio.Task[None]] = set()
        # The channel events are published on (consumers have their own, `_await_live`).
        # Publisher confirms are on by default in FastStream. Publishes are mandatory: one
        # that no queue takes is returned, and on_return_raises makes that its confirm's error
        # (otherwise the broker's ack follows the return and the event counts as published).
        channel = Channel(on_return_raises=True)
        return RabbitBroker(url, default_channel=channel, **common)

    async def _round_trip(self) -> bool:
        # A passive declare of a built-in exchange: one request and its answer, on a channel
        # kept for it. Sent on the channel underneath: aio_pika's robust channel answers a
        # passive declare of an exchange it knows from memory, without asking the broker. A
        # channel whose check failed or timed out is not reused: it is closed in the
        # background (the broker may answer that only once it answers again).
        connection = self._broker._connection
        if connection is None:
            return False
        async with self._ping_lock:
            channel = self._ping_channel
            if channel is None or channel.is_closed:
                channel = self._ping_channel = await connection.channel(publisher_confirms=False)
            try:
                underlay = await channel.get_underlay_channel()
                await underlay.exchange_declare("amq.direct", passive=True)
            except BaseException:
                self._ping_channel = None
                closing = asyncio.create_task(self._close_ping_channel(channel))
                self._ping_closing.add(closing)
                closing.add_done_callback(self._ping_closing.discard)
                raise
        return True

    @staticmethod
    async def _close_ping_channel(channel: AbstractChannel) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(channel.close(), 30)

    # RabbitMQ 3.10 answers a consumer of a quorum queue that another connection declared a
    # moment before with INTERNAL_ERROR (`{badmatch,{error,noproc}}` in
    # rabbit_quorum_queue:consume, in its log) when the queue's Raft member is not running
    # yet: replicas that start together hit it (seen once in CI, three consumers at once).
    start_retried_on: ClassVar[tuple[type[Exception], ...]] = (
        aiormq.exceptions.ConnectionInternalError,
    )

    def _queue(self, route: Route) -> RabbitQueue:
        arguments: QuorumQueueArgs = (
            {"x-expires": self._settings.ephemeral_expiry_s * 1_000}
            if route.ephemeral
            else {
                "x-dead-letter-exchange": names.dead_letters(route.group),
                "x-delivery-limit": NET_DELIVERY_LIMIT,
            }
        )
        return RabbitQueue(
            names.group_queue(route.topic, route.group),
            queue_type=QueueType.QUORUM,
            durable=True,
            arguments=arguments,
        )

    def _register(self, route: Route) -> None:
        # Consumed with aio-pika itself (`_await_live`), not through a FastStream subscriber:
        # its chain per message (context, middlewares, parser, decoder, call wrapper) cost
        # more than aio-pika's own delivery (docs/performance.md, "RabbitMQ consumed without
        # FastStream's chain"). RabbitMQ has no batch fetch; the pipeline batches again what
        # the prefetch window delivers, each message as aio-pika's task of its own.
        queue = self._queue(route)
        self._group_queues.append((route.topic, route.group, queue, route.ephemeral))
        self._consumers.append((route.topic, queue, self._pipeline(route, _Transport(self, route))))

    def _document(self, route: Route) -> None:
        """FastStream's subscriber of what `_register` consumes, for the AsyncAPI document."""

        async def deliver(message: StreamMessage[AbstractIncomingMessage]) -> None:
            raise AssertionError("documentation only: never started")

        self._broker.subscriber(
            self._queue(route),
            _exchange(route.topic),
            ack_policy=AckPolicy.MANUAL,
            parser=_raw,
            no_reply=True,
        )(documented(deliver, route))

    async def _await_live(self) -> None:
        """Consume each group queue on a channel of its own, `BUS_PREFETCH` unacked: its
        acknowledgements may then cover several messages at once (`_Transport.ack`). Its
        exchanges, queues, bindings and consumers are aio-pika's robust ones: after a lost
        connection aio-pika declares, binds and consumes them again."""
        self._consuming = []
        connection = self._broker._connection
        assert connection is not None
        for topic, queue, pipeline in self._consumers:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self._settings.prefetch)
            exchange = await channel.declare_exchange(
                topic, aio_pika.ExchangeType.FANOUT, durable=True
            )
            # Passive where `_declare` found an earlier version's arguments: used as it is.
            native = await channel.declare_queue(
                queue.name, durable=True, arguments=queue.arguments, passive=not queue.declare
            )
            await native.bind(exchange)
            # Acknowledged by the pipeline (or requeued after a retry's delay).
            tag = await native.consume(_deliver(pipeline))
            self._consuming.append((native, tag))

    async def _stop_fetching(self) -> None:
        for native, tag in self._consuming:
            try:
                # Bounded: a broker that stopped answering would hold the close forever.
                await native.cancel(tag, timeout=CANCEL_TIMEOUT_S)
            except Exception:  # closing goes on: the connection closes below anyway
                log.debug("rabbitmq: a consumer did not stop cleanly", exc_info=True)
        self._consuming = []

    def _later(
        self, delay_s: float, message: AbstractIncomingMessage, settled: Callable[[], None]
    ) -> None:
        """Requeue `message` after `delay_s`; then (or once that failed or was cancelled, the
        message left to its channel's closing) call `settled`."""

        async def requeue() -> None:
            try:
                await asyncio.sleep(delay_s)
                await message.nack(requeue=True)
            finally:
                settled()

        task = asyncio.create_task(requeue())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _drain(self) -> None:
        # A retry waiting out its delay: requeue it now, while the channel is open.
        for task in list(self._retries):
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)

    async def _declare(self) -> None:
        import aiormq

        connection = self._broker._connection  # FastStream has no "try this declare"
        assert connection is not None
        for _, group, queue, ephemeral in self._group_queues:
            if ephemeral:
                await self._declare_ephemeral(queue)
                continue
            # The net's target must exist first: RabbitMQ drops what it cannot route.
            await self._route_dead_letters(group)
            channel = await connection.channel()
            try:
                await channel.declare_queue(queue.name, durable=True, arguments=queue.arguments)
            except aiormq.exceptions.ChannelPreconditionFailed:
                # Declared by an earlier version, without the net or with one through the
                # default exchange; queue arguments cannot change, and deleting a queue could
                # lose events. Use it as it is.
                log.warning(
                    "queue %s exists with an earlier version's arguments (no x-delivery-limit, "
                    "or dead letters through the default exchange); delete it once drained",
                    queue.name,
                )
                queue.declare = False  # `_await_live` declares it passively
            finally:
                if not channel.is_closed:
                    await channel.close()

    async def _declare_ephemeral(self, queue: RabbitQueue) -> None:
        """Declare an ephemeral queue; one declared with other arguments (by an earlier version,
        or with another expiry) holds nothing worth keeping: replace it."""
        import aiormq

        connection = self._broker._connection
        assert connection is not None
        channel = await connection.channel()
        try:
            await channel.declare_queue(queue.name, durable=True, arguments=queue.arguments)
        except aiormq.exceptions.ChannelPreconditionFailed:
            channel = await connection.channel()  # the failed declare closed the other one
            await channel.queue_delete(queue.name)
            await channel.declare_queue(queue.name, durable=True, arguments=queue.arguments)
            log.info("replaced queue %s, declared with other arguments", queue.name)
        finally:
            if not channel.is_closed:
                await channel.close()

    async def _route_dead_letters(self, group: str) -> None:
        """Declare `dlq.<group>`, the queue and the exchange bound to it (once per bus)."""
        if group in self._dead_letter_routes:
            return
        queue = await self._broker.declare_queue(_dead_letter_queue(group))
        exchange = await self._broker.declare_exchange(_dead_letter_exchange(group))
        await queue.bind(exchange)
        self._dead_letter_routes.add(group)

    async def _publish_dead_letter(self, group: str, body: bytes) -> None:
        await self._route_dead_letters(group)
        await self._broker.publish(
            body,
            exchange=_dead_letter_exchange(group),
            persist=True,
            content_type="application/json",
        )

    confirms_apart: ClassVar[bool] = True

    async def _start_publish(self, topic: str, body: bytes, key: str) -> Awaitable[object]:
        """The publish as a task of its own, started in call order: with the exchange declared
        first, nothing on its way to the channel waits (FastStream keeps what it declared),
        so the tasks reach aiormq's channel lock, which is first come first served, in the
        order of these calls, and send their frames in that order; each then waits for its
        broker confirm beside the others."""
        exchange = await self._broker.declare_exchange(_exchange(topic))
        return asyncio.ensure_future(self._send(exchange, topic, body))

    async def _publish(self, topic: str, body: bytes, key: str) -> None:
        await self._send(await self._broker.declare_exchange(_exchange(topic)), topic, body)

    @staticmethod
    async def _send(exchange: AbstractExchange, topic: str, body: bytes) -> None:
        """Publish on aio-pika's exchange, on FastStream's channel (publisher confirms, returns
        raised), not through FastStream's publish: its message building and middlewares per
        event cost more than aio-pika's own (docs/performance.md, "Publishing without
        FastStream's chain"). Dead letters still go through FastStream."""
        # Persistent (delivery mode 2): a durable queue keeps the event across a broker
        # restart. Mandatory: an event no queue takes comes back, as the confirm's error.
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/cloudevents+json",
        )
        try:
            await exchange.publish(message, routing_key="", mandatory=True)
        except aiormq.exceptions.PublishError:
            raise NotPublished(
                f"no queue is bound to {topic}: RabbitMQ returned the event (no subscriber "
                "group has declared its queue yet)"
            ) from None


def _deliver(
    pipeline: Pipeline[AbstractIncomingMessage],
) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    async def deliver(message: AbstractIncomingMessage) -> None:
        await pipeline.deliver([message])

    return deliver
