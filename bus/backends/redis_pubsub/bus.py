"""Redis pub/sub: fire-and-forget broadcast, the notes' "pub/sub" in its purest form.

URL: `redis://[:password@]host:port/db` (default `redis://127.0.0.1:6379/0`). The topic is the
channel name.

| feature | |
|---|---|
| fan-out across groups | yes: every subscriber of the channel gets every event |
| competing consumers | **no**: groups mean nothing to pub/sub, every replica gets every event |
| offline catch-up | **no**: what is published while nobody listens is gone |
| redelivery | **no**: an event whose handler raises goes straight to `dlq.<group>` |
| ordering | per channel |

Use it where a missed event is harmless (live UI updates, cache invalidation), never for work
that must happen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from faststream import StreamMessage
from faststream.redis import PubSub, RedisBroker

from bus import names
from bus.backends._faststream import FastStreamBus, documented
from bus.backends._redis.format import PlainMessageFormat
from bus.backends._redis.pipeline import PipelinedPublisher
from bus.backends.redis_pubsub import BACKEND
from bus.codec import PoisonMessage
from bus.pipeline import Pipeline, Route
from bus.port import Capabilities


async def _raw(message: Any) -> StreamMessage[Any]:
    """FastStream's parser, skipped: the pipeline reads the message itself."""
    return StreamMessage(raw_message=message, body=b"")


class _Transport:
    redelivers_on_a_timer = False

    def __init__(self, bus: RedisPubSubBus, route: Route) -> None:
        self._bus = bus
        self._route = route

    def body(self, message: dict[str, Any]) -> bytes:
        data = message.get("data")
        if not isinstance(data, bytes):
            raise PoisonMessage(f"a pub/sub message whose data is {type(data).__name__}")
        return data

    async def attempt(self, message: dict[str, Any]) -> int:
        return 1  # pub/sub never delivers twice

    def scope(self, message: dict[str, Any]) -> None:
        return None

    async def ack(self, messages: Sequence[dict[str, Any]]) -> None:
        return  # nothing to acknowledge: it is gone from Redis already

    async def retry(self, message: dict[str, Any], delay_s: float) -> None:
        raise AssertionError("pub/sub cannot redeliver: the pipeline dead-letters instead")

    async def keep_alive(self, messages: Sequence[dict[str, Any]]) -> None:
        return

    async def dead_letter(self, record: bytes) -> None:
        await self._bus._publish_dead_letter(self._route.group, record)

    async def release(self, messages: Sequence[Any]) -> None:
        return  # unacknowledged: the broker delivers them again


class RedisPubSubBus(FastStreamBus[RedisBroker]):
    name: ClassVar[str] = BACKEND.name
    capabilities: ClassVar[Capabilities] = BACKEND.capabilities

    @staticmethod
    def publisher_arguments(topic: str) -> dict[str, Any]:
        return {"channel": PubSub(topic)}

    publishes_keep_order_together: ClassVar[bool] = True  # one pipeline, in arrival order

    def _create_broker(self, url: str, **common: Any) -> RedisBroker:
        # Plain PUBLISHes; concurrent ones share a round trip (see _redis/pipeline.py).
        self._pipelined = PipelinedPublisher(lambda: self._broker.config.connection.client)
        return RedisBroker(url, message_format=PlainMessageFormat, **common)

    def _register(self, route: Route) -> None:
        # A channel subscription is ephemeral already: Redis keeps nothing for it.
        pipeline = self._pipeline(route, _Transport(self, route))
        self._broker.subscriber(channel=PubSub(route.topic), parser=_raw, no_reply=True)(
            documented(_deliver(pipeline), route)
        )

    async def _publish(self, topic: str, body: bytes, key: str) -> None:
        await self._pipelined.send("PUBLISH", topic, body)

    async def _publish_dead_letter(self, group: str, body: bytes) -> None:
        # A channel keeps nothing, so a failed event goes to a stream, where it stays until
        # replayed or purged: pub/sub cannot retry, but it need not fail silently.
        await self._broker.publish(body, stream=names.dead_letters(group))


def _deliver(pipeline: Pipeline[dict[str, Any]]) -> Any:
    async def deliver(message: StreamMessage[dict[str, Any]]) -> None:
        await pipeline.hand_over(message.raw_message)

    return deliver
