"""A bus that puts the system's topic and group names under names of the caller's choosing.

The services subscribe and publish under the system's physical names (`order_created`, group
`billing`). The demo runs them beside whatever else uses the broker, such as `orderbus up`:
on the real names its services would join the running system's groups and take its events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from bus import Bus, Capabilities, Handler
from bus.port import BatchHandler, Middleware, Observer
from contracts import CloudEvent


class _Renamed:
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def __init__(self, inner: Bus, topic: Callable[[str], str], group: Callable[[str], str]):
        self._inner = inner
        self._topic = topic
        self._group = group

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await self._inner.publish(self._topic(topic), event)

    async def publish_many(
        self,
        events: Sequence[tuple[str, CloudEvent]],
        *,
        stored: Sequence[bytes] | None = None,
    ) -> Sequence[BaseException | None]:
        renamed = [(self._topic(t), e) for t, e in events]
        return await self._inner.publish_many(renamed, stored=stored)

    def subscribe(
        self, topic: str, handler: Handler, *, group: str, consumer: str, ephemeral: bool = False
    ) -> None:
        self._inner.subscribe(
            self._topic(topic),
            handler,
            group=self._group(group),
            consumer=consumer,
            ephemeral=ephemeral,
        )

    def subscribe_batch(
        self,
        topic: str,
        handler: BatchHandler,
        *,
        group: str,
        consumer: str,
        ephemeral: bool = False,
    ) -> None:
        self._inner.subscribe_batch(
            self._topic(topic),
            handler,
            group=self._group(group),
            consumer=consumer,
            ephemeral=ephemeral,
        )

    def use(self, middleware: Middleware) -> None:
        self._inner.use(middleware)

    def observe(self, observer: Observer) -> None:
        self._inner.observe(observer)

    async def start(self) -> None:
        await self._inner.start()

    async def ping(self) -> bool:
        return await self._inner.ping()

    async def close(self) -> None:
        await self._inner.close()


def renamed(inner: Bus, topic: Callable[[str], str], group: Callable[[str], str]) -> Bus:
    """`inner`, with every topic passed through `topic` and every group through `group`."""

    class Renamed(_Renamed):
        # The backend's own name and guarantees: services read them (retry or dead-letter?).
        name = inner.name
        capabilities = inner.capabilities

    return Renamed(inner, topic, group)
