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
"""

from __future__ import annotations

from typing import Any, ClassVar

from faststream import AckPolicy, StreamMessage
from faststream.rabbit import (
    Channel,
    ExchangeType,
    QueueType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
)

from bus import names
from bus.backends._faststream import Adapt, FastStreamBus
from bus.port import Capabilities


def _exchange(topic: str) -> RabbitExchange:
    return RabbitExchange(topic, type=ExchangeType.FANOUT, durable=True)


class RabbitMQBus(FastStreamBus[RabbitBroker]):
    name: ClassVar[str] = "rabbitmq"
    capabilities: ClassVar[Capabilities] = Capabilities(
        fan_out=True,
        competing_consumers=True,
        offline_catch_up=True,
        redelivery=True,
        per_key_ordering=False,
        ordering="per queue, with one consumer",
    )

    def _create_broker(self, url: str, **common: Any) -> RabbitBroker:
        # Publisher confirms are on by default in FastStream; the prefetch is not set, which
        # lets one consumer take the whole queue: bound it.
        return RabbitBroker(
            url, default_channel=Channel(prefetch_count=self._settings.prefetch), **common
        )

    def _register(self, topic: str, group: str, consumer: str, adapt: Adapt) -> None:
        queue = RabbitQueue(
            names.group_queue(topic, group), queue_type=QueueType.QUORUM, durable=True
        )
        # REJECT_ON_ERROR, the default, drops the message (or dead-letters it, with a DLX);
        # NACK requeues it so it is delivered again.
        self._broker.subscriber(queue, _exchange(topic), ack_policy=AckPolicy.NACK_ON_ERROR)(
            adapt(self._attempt)
        )

    async def _attempt(self, message: StreamMessage[Any]) -> int:
        # Quorum queues count earlier deliveries in `x-delivery-count` (absent on the first).
        return int(message.headers.get("x-delivery-count", 0)) + 1

    async def _publish_dead_letter(self, group: str, body: bytes) -> None:
        queue = RabbitQueue(names.dead_letters(group), queue_type=QueueType.QUORUM, durable=True)
        await self._broker.declare_queue(queue)  # cached after the first time
        await self._broker.publish(body, queue=queue, persist=True, content_type="application/json")

    async def _publish(self, topic: str, body: bytes, key: str) -> None:
        exchange = _exchange(topic)
        await self._broker.declare_exchange(exchange)
        # persist: delivery mode 2, so a durable queue keeps the event across a broker restart
        # (FastStream's default is transient).
        await self._broker.publish(
            body, exchange=exchange, persist=True, content_type="application/cloudevents+json"
        )
