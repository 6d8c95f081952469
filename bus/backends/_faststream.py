"""What every FastStream-backed bus shares: the subscriptions, start and close.

A backend module subclasses `FastStreamBus` and supplies only what is broker-specific: the
broker, how one subscription maps onto native subscribers and its `Transport` (the
primitives the delivery pipeline, `bus.pipeline`, needs), how to publish. Semantics FastStream
leaves to defaults are set explicitly there, each with the reason. FastStream acknowledges
nothing (`AckPolicy.MANUAL` everywhere): the pipeline settles every message through the
transport.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from faststream import StreamMessage
from faststream._internal.broker import BrokerUsecase

from bus import names, tracing
from bus.codec import encoded, stored_bodies
from bus.pipeline import Pipeline, Route, Routing, Transport
from bus.port import Capabilities
from bus.settings import BusSettings
from contracts.envelope import CloudEvent

log = logging.getLogger("bus")

OnMessage = Callable[..., Awaitable[None]]
BrokerT = TypeVar("BrokerT", bound=BrokerUsecase[Any, Any, Any])
M = TypeVar("M")


async def _the_message_itself(message: StreamMessage[Any]) -> StreamMessage[Any]:
    return message


def documented(callback: OnMessage, route: Route) -> OnMessage:
    """`callback(message)` with the handler's name, docstring and payload annotation, which
    FastStream reads for the AsyncAPI document (at run time none is used). Its one parameter
    stays its own: FastStream unpacks the message into as many as it finds."""
    handler = route.handler
    callback.__name__ = callback.__qualname__ = getattr(handler, "__name__", callback.__name__)
    callback.__doc__ = handler.__doc__
    payload = next(
        (v for k, v in getattr(handler, "__annotations__", {}).items() if k != "return"), None
    )
    callback.__annotations__ = {"return": None}
    if payload is not None:
        callback.__annotations__["message"] = payload
    return callback


PING_TIMEOUT_S = 2.0
"""The most one readiness check waits for the broker's answer."""


class FastStreamBus(Routing, ABC, Generic[BrokerT]):
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def __init__(self, settings: BusSettings) -> None:
        super().__init__()
        self._settings = settings
        self._routes: list[Route] = []
        self._pipelines: list[Pipeline[Any]] = []
        self._broker = self._create_broker(
            settings.resolved_url,
            # FastStream logs every message at INFO; ours are the lines that matter.
            logger=logging.getLogger(f"bus.faststream.{self.name}"),
            log_level=logging.DEBUG,
            # No FastDepends: it resolves `Context(...)` parameters in a thread pool, one hop
            # per message, and the threads finish in any order, so a consumer saw events out
            # of order. The decoder hands our callback the message itself instead.
            apply_types=False,
            decoder=_the_message_itself,
        )
        self._started = False

    # -- what a backend supplies -------------------------------------------------------------

    @abstractmethod
    def _create_broker(self, url: str, **common: Any) -> BrokerT: ...

    @abstractmethod
    def _register(self, route: Route) -> None:
        """Create the native subscriber(s) that deliver `route.topic` to `route.group` as
        `route.consumer`, handing what they take to `self._pipeline(route, transport)`. An
        `ephemeral` group starts at the topic's end and is not kept for long without a
        consumer (see `Bus.subscribe`)."""

    @abstractmethod
    async def _publish(self, topic: str, body: bytes, key: str) -> None: ...

    @staticmethod
    @abstractmethod
    def publisher_arguments(topic: str) -> dict[str, Any]:
        """FastStream's publisher arguments for where `publish(topic, ...)` writes, for the
        AsyncAPI document (the subscriber side is what `_register` declares)."""

    @abstractmethod
    async def _publish_dead_letter(self, group: str, body: bytes) -> None:
        """Append one record to the group's `dlq.<group>`, confirmed by the broker."""

    def _document(self, route: Route) -> None:
        """Create the native subscriber(s) of `route` for the AsyncAPI document only (the bus
        is never started). By default what `_register` creates, which FastStream reads."""
        self._register(route)

    def _finish_registration(self) -> None:
        """Create native subscribers `_register` only collected (Kafka: one per group)."""

    async def _declare(self) -> None:
        """Create the topology subscriptions need before the broker starts consuming."""

    async def _await_live(self) -> None:
        """Return once every subscription receives what is published from now on."""

    async def _drain(self) -> None:
        """Send what the transports still hold (coalesced acknowledgements), before the
        connection closes."""

    async def _stop_fetching(self) -> None:
        """Take no more messages from the broker; the connection stays open to settle what
        the pipelines hold. By default: stop the native subscribers."""
        for subscriber in self._broker.subscribers:
            try:
                await subscriber.stop()
            except Exception:  # closing goes on: the connection closes below anyway
                log.debug("%s: a subscriber did not stop cleanly", self.name, exc_info=True)

    def _pipeline(self, route: Route, transport: Transport[M]) -> Pipeline[M]:
        pipeline = Pipeline(route, transport, self._settings, self.capabilities, self.name)
        self._pipelines.append(pipeline)
        return pipeline

    # -- the port ----------------------------------------------------------------------------

    async def _publish_event(self, topic: str, event: CloudEvent, stored: bytes | None) -> None:
        with tracing.publishing(topic, event, self.name) as stamped:
            body = encoded(event, stamped, stored, self._settings.max_event_bytes)
            await self._publish(names.check_topic(topic), body, stamped.subject or str(stamped.id))
        log.debug("published %s %s to %s on %s", event.type, event.id, topic, self.name)

    publishes_keep_order_together: ClassVar[bool] = False
    """Whether publishes started together reach the broker in the order they started (Redis:
    they queue on one pipeline). `publish_many` then starts them all at once, one round trip
    for the batch."""

    confirms_apart: ClassVar[bool] = False
    """Whether the client takes an event in order and confirms it later (`_start_publish`):
    `publish_many` then hands every event over one after the other and awaits the broker's
    answers together. Neither flag: one publish after the other, each awaited."""

    async def _start_publish(self, topic: str, body: bytes, key: str) -> Awaitable[object]:
        """Hand one event to the client, which sends it in the order of these calls; return
        what to await for the broker's confirmation (raises the broker's refusal)."""
        raise NotImplementedError

    async def publish_many(
        self,
        events: Sequence[tuple[str, CloudEvent]],
        *,
        stored: Sequence[bytes] | None = None,
    ) -> Sequence[BaseException | None]:
        if not self.confirms_apart and not self.publishes_keep_order_together:
            return await super().publish_many(events, stored=stored)
        bodies = stored_bodies(events, stored)
        if self.publishes_keep_order_together:
            return await asyncio.gather(
                *(
                    self._publish_event(topic, event, body)
                    for (topic, event), body in zip(events, bodies, strict=True)
                ),
                return_exceptions=True,
            )
        confirmations: list[Awaitable[object]] = []
        refused: list[BaseException | None] = []
        try:
            for (topic, event), stored_body in zip(events, bodies, strict=True):
                try:
                    with tracing.publishing(topic, event, self.name) as stamped:
                        body = encoded(event, stamped, stored_body, self._settings.max_event_bytes)
                        key = stamped.subject or str(stamped.id)
                        confirmations.append(
                            await self._start_publish(names.check_topic(topic), body, key)
                        )
                except Exception as exc:  # noqa: BLE001 - the caller's, per event
                    # Nothing after it is handed over: in order, nothing may overtake it.
                    refused = [exc] * (len(events) - len(confirmations))
                    break
        except BaseException:
            # Cancelled while handing over: what was handed over is awaited by nobody now
            # (the caller publishes the batch again), so it is not left running unseen.
            for waiting in confirmations:
                if isinstance(waiting, asyncio.Future):
                    waiting.cancel()
                elif asyncio.iscoroutine(waiting):
                    waiting.close()
            raise
        answers = await asyncio.gather(*confirmations, return_exceptions=True)
        outcomes: list[BaseException | None] = [
            answer if isinstance(answer, BaseException) else None for answer in answers
        ]
        log.debug("published %d events on %s", len(outcomes), self.name)
        return outcomes + refused

    def _routed(self, route: Route) -> None:
        if self._started:
            raise RuntimeError("subscribe() before start()")
        self._routes.append(route)
        self._register(route)

    start_retried_on: ClassVar[tuple[type[Exception], ...]] = ()
    """Errors of a broker's own race at start-up, worth another try or two."""

    async def start(self) -> None:
        self._finish_registration()
        for attempt in range(1, 4):
            try:
                await self._broker.connect()
                await self._declare()
                await self._broker.start()
                await self._await_live()
                break
            except Exception as exc:  # noqa: BLE001 - re-raised as ConnectionError below
                await self._broker.stop()
                if isinstance(exc, self.start_retried_on) and attempt < 3:
                    log.warning(
                        "%s: start failed (%s); trying again", self.name, type(exc).__name__
                    )
                    await asyncio.sleep(0.2 * attempt)
                    continue
                # The driver's message may quote the URL; ours names the backend and safe URL.
                raise ConnectionError(
                    f"{self.name}: cannot start on {self._settings.safe_url}: {type(exc).__name__}"
                ) from None
        self._started = True
        log.info("%s bus started on %s", self.name, self._settings.safe_url)

    async def ping(self) -> bool:
        """Readiness: one round trip to the broker, bounded. A frozen or cut-off broker can
        leave the connection open, so the client's own idea of "connected" proves nothing."""
        try:
            return await asyncio.wait_for(self._round_trip(), PING_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - readiness: any failure means "not reachable"
            return False

    async def _round_trip(self) -> bool:
        """Ask the broker something and wait for its answer (FastStream's ping, where that is
        a request: Redis PING, Kafka metadata)."""
        return bool(await self._broker.ping(timeout=PING_TIMEOUT_S))

    async def close(self) -> None:
        """Stop fetching, let the batches in hand finish and settle them, send what waits
        to be acknowledged, then close the connections."""
        self._started = False
        await self._stop_fetching()
        for pipeline in self._pipelines:
            await pipeline.close()
        await self._drain()
        await self._broker.stop()
