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

from typing import Any, ClassVar

from faststream import StreamMessage
from faststream.redis import PubSub, RedisBroker

from bus import names
from bus.backends._faststream import Adapt, FastStreamBus
from bus.backends._redis_format import PlainMessageFormat
from bus.backends._redis_pipeline import PipelinedPublisher
from bus.port import Capabilities


class RedisPubSubBus(FastStreamBus[RedisBroker]):
    name: ClassVar[str] = "redis-pubsub"
    capabilities: ClassVar[Capabilities] = Capabilities(
        fan_out=True,
        competing_consumers=False,
        offline_catch_up=False,
        redelivery=False,
        per_key_ordering=False,
        ordering="per channel",
    )

    def _create_broker(self, url: str, **common: Any) -> RedisBroker:
        # Concurrent publishes share a round trip (see _redis_pipeline for why and numbers).
        self._pipelined = PipelinedPublisher(
            lambda: self._broker.config.connection.client.pipeline(transaction=False)
        )
        return RedisBroker(url, message_format=PlainMessageFormat, **common)

    def _register(
        self, topic: str, group: str, consumer: str, adapt: Adapt, *, ephemeral: bool
    ) -> None:
        # A channel subscription is ephemeral already: Redis keeps nothing for it.
        self._broker.subscriber(channel=PubSub(topic))(adapt(self._attempt))

    async def _attempt(self, message: StreamMessage[Any]) -> int:
        return 1  # pub/sub never delivers twice

    async def _publish(self, topic: str, body: bytes, key: str) -> None:
        await self._pipelined.publish(
            lambda pipe: self._broker.publish(body, channel=topic, pipeline=pipe)
        )

    async def _publish_dead_letter(self, group: str, body: bytes) -> None:
        # A channel keeps nothing, so a failed event goes to a stream, where it stays until
        # replayed or purged: pub/sub cannot retry, but it need not fail silently.
        await self._broker.publish(body, stream=names.dead_letters(group))
