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

Each subscription reads its channel on a redis-py `PubSub` connection of its own. When that
connection drops, redis-py reconnects and subscribes again by itself; past its retries the
listener tries again every `RECONNECT_S`. What is published meanwhile is lost (see above).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from faststream import StreamMessage
from faststream.redis import PubSub, RedisBroker

from bus import names
from bus.backends._faststream import FastStreamBus, documented
from bus.backends._redis.format import PlainMessageFormat
from bus.backends._redis.outage import Outages
from bus.backends._redis.pipeline import PipelinedPublisher
from bus.backends.redis_pubsub import BACKEND
from bus.codec import PoisonMessage
from bus.pipeline import Pipeline, Route
from bus.port import Capabilities

log = logging.getLogger("bus")

POLL_S = 0.1
"""How long one read waits for a message: also how soon a listener sees `close`."""

STOP_WAIT_S = 1.0
"""The most `close` waits for the listeners to see their flag (past it they are cancelled)."""

RECONNECT_S = 1.0
"""The pause between attempts to reach Redis once redis-py's own reconnects gave up."""

SUBSCRIBE_TIMEOUT_S = 10.0
"""The most `start` waits for Redis to confirm one subscription."""


async def _raw(message: Any) -> StreamMessage[Any]:
    """FastStream's parser, for the document's subscriber: it never parses anything."""
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
        self._channels: list[tuple[str, Pipeline[dict[str, Any]]]] = []
        self._subscriptions: list[Any] = []  # redis-py's `PubSub`, one per channel
        self._listeners: list[asyncio.Task[None]] = []
        self._listening = False
        self._outages = Outages(self.name, RECONNECT_S)
        return RedisBroker(url, message_format=PlainMessageFormat, **common)

    def _register(self, route: Route) -> None:
        # Read with redis-py itself (`_await_live`), not through a FastStream subscriber: its
        # chain per message (context, middlewares, parser, decoder, call wrapper) cost more
        # than redis-py's own read (docs/performance.md, "Redis pub/sub read without
        # FastStream's chain"). A channel subscription is ephemeral already: Redis keeps
        # nothing for it.
        self._channels.append((route.topic, self._pipeline(route, _Transport(self, route))))

    def _document(self, route: Route) -> None:
        """FastStream's subscriber of what `_register` reads, for the AsyncAPI document."""

        async def deliver(message: StreamMessage[dict[str, Any]]) -> None:
            raise AssertionError("documentation only: never started")

        self._broker.subscriber(channel=PubSub(route.topic), parser=_raw, no_reply=True)(
            documented(deliver, route)
        )

    async def _await_live(self) -> None:
        """Subscribe every channel on a connection of its own and return once Redis has
        confirmed each subscription (an event published before that would be missed)."""
        client = self._broker.config.connection.client
        self._listening = True
        self._outages.start()
        try:
            for topic, pipeline in self._channels:
                subscription = client.pubsub()
                self._subscriptions.append(subscription)
                await subscription.subscribe(topic)
                async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                    while True:
                        reply = await subscription.get_message(timeout=SUBSCRIBE_TIMEOUT_S)
                        if reply is not None and reply["type"] == "subscribe":
                            break
                self._listeners.append(
                    asyncio.create_task(
                        self._listen(subscription, pipeline),
                        name=f"listen {topic}/{pipeline.route.group}",
                    )
                )
        except BaseException:
            await self._stop_fetching()  # start fails: nothing of it is left listening
            raise

    async def _stop_fetching(self) -> None:
        self._listening = False  # on a flag, not on cancellation alone (_redis/outage.py)
        self._outages.stop()
        if self._listeners:
            _, late = await asyncio.wait(self._listeners, timeout=STOP_WAIT_S)
            for listener in late:
                listener.cancel()
        self._listeners = []
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):  # closing goes on: the connection is dropped
                await subscription.aclose()
        self._subscriptions = []

    async def _listen(self, subscription: Any, pipeline: Pipeline[dict[str, Any]]) -> None:
        """Hand every message of the channel to the pipeline, until `close`. A lost
        connection is logged once, and once more when the subscription is back."""
        name = f"{pipeline.route.topic}/{pipeline.route.group}"
        while self._listening:
            try:
                message = await subscription.get_message(
                    ignore_subscribe_messages=True, timeout=POLL_S
                )
            except Exception as exc:  # noqa: BLE001 - a listener must outlive any outage
                self._outages.begin(name, "lost the subscription of", exc)
                await self._outages.wait()
                continue
            self._outages.end(name, "subscribed to")
            if message is not None:
                await pipeline.hand_over(message)

    async def _publish(self, topic: str, body: bytes, key: str) -> None:
        await self._pipelined.send("PUBLISH", topic, body)

    async def _publish_dead_letter(self, group: str, body: bytes) -> None:
        # A channel keeps nothing, so a failed event goes to a stream, where it stays until
        # replayed or purged: pub/sub cannot retry, but it need not fail silently.
        await self._broker.publish(body, stream=names.dead_letters(group))
