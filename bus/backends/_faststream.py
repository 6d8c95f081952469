"""What every FastStream-backed bus shares: envelope decoding, logging, start and close.

A backend module subclasses `FastStreamBus` and supplies only what is broker-specific: the
broker, how one subscription maps onto native subscribers, how to publish, and where the
broker keeps a delivery count. Semantics FastStream leaves to defaults are set explicitly
there, each with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar, Generic, TypeVar

from faststream import StreamMessage
from faststream._internal.broker import BrokerUsecase
from faststream.exceptions import NackMessage

from bus import names, tracing
from bus.codec import PoisonMessage, decode, encode
from bus.logfields import event_fields
from bus.port import Capabilities, Delivery, Handler
from bus.retry import DeadLetter
from bus.settings import BusSettings
from contracts.envelope import CloudEvent

log = logging.getLogger("bus")

OnMessage = Callable[..., Awaitable[None]]
AttemptOf = Callable[[StreamMessage[Any]], Awaitable[int | None]]
Adapt = Callable[[AttemptOf], OnMessage]
"""Wraps the service's handler for one native subscriber, given where its attempt count is."""


BrokerT = TypeVar("BrokerT", bound=BrokerUsecase[Any, Any, Any])


async def _the_message_itself(message: StreamMessage[Any]) -> StreamMessage[Any]:
    return message


class FastStreamBus(ABC, Generic[BrokerT]):
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def __init__(self, settings: BusSettings) -> None:
        self._settings = settings
        self._broker = self._create_broker(
            settings.resolved_url,
            # FastStream logs every message at INFO; ours are the per-event lines that matter.
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
    def _register(
        self, topic: str, group: str, consumer: str, adapt: Adapt, *, ephemeral: bool
    ) -> None:
        """Create the native subscriber(s) that deliver `topic` to `group` as `consumer`;
        `adapt(self._attempt)` gives the callback to register. An `ephemeral` group starts
        at the topic's end and is not kept for long without a consumer (see `Bus.subscribe`)."""

    @abstractmethod
    async def _publish(self, topic: str, body: bytes, key: str) -> None: ...

    @abstractmethod
    async def _publish_dead_letter(self, group: str, body: bytes) -> None:
        """Append one record to the group's `dlq.<group>`, confirmed by the broker."""

    async def _attempt(self, message: StreamMessage[Any]) -> int | None:
        """The delivery attempt of `message` where the broker counts them."""
        return None

    async def _retry_later(self, message: StreamMessage[Any], delay_s: float) -> None:
        """Have `message` delivered again after about `delay_s`. By default: wait, holding the
        message unacknowledged but letting this consumer handle others, then nack it."""
        await asyncio.sleep(delay_s)
        raise NackMessage

    async def _still_waiting(
        self, message: StreamMessage[Any], topic: str, group: str, consumer: str
    ) -> None:
        """Tell a broker that redelivers on a timer (`BUS_REDELIVERY_AFTER_MS`) that `message`
        waits its turn behind others of its batch, held by a live consumer. By default there
        is nobody to tell."""

    redelivers_on_a_timer: ClassVar[bool] = False
    """Whether `_still_waiting` does anything (saves a timer per waiting message if not)."""

    def _settled(self, message: StreamMessage[Any]) -> None:
        """`message` is done with (handled or dead-lettered): forget any count kept for it."""

    def _finish_registration(self) -> None:
        """Create native subscribers `_register` only collected (Kafka: one per group)."""

    async def _declare(self) -> None:
        """Create the topology subscriptions need before the broker starts consuming."""

    async def _await_live(self) -> None:
        """Return once every subscription receives what is published from now on."""

    # -- the port ----------------------------------------------------------------------------

    async def publish(self, topic: str, event: CloudEvent) -> None:
        with tracing.publishing(topic, event, self.name) as event:
            body = encode(event, self._settings.max_event_bytes)
            await self._publish(names.check_topic(topic), body, event.subject or str(event.id))
        log.debug("published %s %s to %s on %s", event.type, event.id, topic, self.name)

    def subscribe(
        self, topic: str, handler: Handler, *, group: str, consumer: str, ephemeral: bool = False
    ) -> None:
        if self._started:
            raise RuntimeError("subscribe() before start()")
        names.check_topic(topic)
        names.check_group(group)
        names.check_consumer(consumer)
        # FastStream runs a RabbitMQ prefetch window, or a NATS pull batch, as concurrent
        # tasks (started in delivery order). One FIFO lock per subscription, shared by its
        # native subscribers, keeps the port's rule: one event at a time, in delivery order.
        one_at_a_time = asyncio.Lock()
        self._register(
            topic,
            group,
            consumer,
            lambda attempt_of: self._adapt(
                handler, topic, group, consumer, attempt_of, one_at_a_time, ephemeral=ephemeral
            ),
            ephemeral=ephemeral,
        )

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
        try:
            return bool(await self._broker.ping(timeout=2.0))
        except Exception:  # noqa: BLE001 - readiness: any failure means "not reachable"
            return False

    async def close(self) -> None:
        # FastStream stops its subscribers first: no new fetches, in-flight handlers finish
        # and are acknowledged, then the connections close.
        await self._broker.stop()
        self._started = False

    # -- shared machinery --------------------------------------------------------------------

    def _adapt(
        self,
        handler: Handler,
        topic: str,
        group: str,
        consumer: str,
        attempt_of: AttemptOf,
        one_at_a_time: asyncio.Lock,
        *,
        ephemeral: bool,
    ) -> OnMessage:
        max_bytes = self._settings.max_event_bytes
        policy = self._settings.retry

        async def dead_letter(
            message: StreamMessage[Any],
            attempts: int,
            error: BaseException | str,
            event: CloudEvent | None,
        ) -> None:
            event_id = str(event.id) if event is not None else None
            if ephemeral:
                # A dlq.<group> would outlive the group it is named after, for events that
                # were only a live view: drop it, loudly.
                self._settled(message)
                log.error(
                    "dropped %s from ephemeral %s/%s after %d attempt(s): %s",
                    event_id or "a message",
                    topic,
                    group,
                    attempts,
                    error,
                    extra=event_fields(
                        "drop",
                        event,
                        topic=topic,
                        service=group,
                        instance=consumer,
                        attempt=attempts,
                    ),
                )
                return
            record = DeadLetter.of(
                message.body,
                topic=topic,
                group=group,
                consumer=consumer,
                attempts=attempts,
                error=error,
                event_id=event_id,
            )
            await self._publish_dead_letter(group, record.to_json())
            self._settled(message)
            log.error(
                "dead-lettered %s from %s/%s after %d attempt(s): %s",
                event_id or "a message",
                topic,
                group,
                attempts,
                record.error,
                extra=event_fields(
                    "dead_letter",
                    event,
                    topic=topic,
                    service=group,
                    instance=consumer,
                    attempt=attempts,
                ),
            )

        async def on_message(message: StreamMessage[Any]) -> None:
            attempt = await attempt_of(message)
            try:
                event = decode(message.body, max_bytes)
            except PoisonMessage as poison:
                await dead_letter(message, attempt or 1, poison, None)  # retrying cannot mend it
                return
            if attempt is not None and attempt > policy.max_attempts:
                # Delivered past the limit without an outcome: its handler never returned,
                # most likely because the consumer died inside it. Do not try it again.
                await dead_letter(
                    message,
                    attempt - 1,
                    "no outcome after the last attempt (did the consumer die?)",
                    event,
                )
                return
            delivery = Delivery(topic, group, consumer, attempt)
            async with self._turn(message, one_at_a_time, topic, group, consumer):
                try:
                    with tracing.handling(topic, group, consumer, event, attempt, self.name):
                        await handler(event, delivery)
                except Exception as failure:  # noqa: BLE001 - every failure gets the policy
                    n = attempt or 1
                    if not self.capabilities.redelivery or policy.gives_up(n):
                        await dead_letter(message, n, failure, event)
                        return
                    delay = policy.delay_s(n)
                    log.warning(
                        "handler failed for %s %s on %s/%s (attempt %d of %d): %s; "
                        "retrying in %.2fs",
                        event.type,
                        event.id,
                        group,
                        consumer,
                        n,
                        policy.max_attempts,
                        failure,
                        delay,
                        extra=event_fields(
                            "retry", event, topic=topic, service=group, instance=consumer, attempt=n
                        ),
                    )
                else:
                    self._settled(message)
                    log.debug("handled %s %s on %s/%s", event.type, event.id, group, consumer)
                    return
            # Outside the lock: the consumer goes on with other events meanwhile.
            await self._retry_later(message, delay)

        return on_message

    @contextlib.asynccontextmanager
    async def _turn(
        self,
        message: StreamMessage[Any],
        one_at_a_time: asyncio.Lock,
        topic: str,
        group: str,
        consumer: str,
    ) -> AsyncIterator[None]:
        """Hold the subscription's lock for `message`. While it waits behind slow handlers,
        keep telling the broker it is alive: otherwise the broker's clock, running since
        delivery, hands it out again and counts an attempt before its handler even started
        (NATS to another consumer, Redis Streams to the reclaimer). Its handler then starts
        with at least two thirds of `BUS_REDELIVERY_AFTER_MS` left."""
        timer: asyncio.TimerHandle | None = None
        if self.redelivers_on_a_timer and one_at_a_time.locked():
            # A timer, not a task: most waits end long before the first beat, and a NATS
            # batch makes fifteen waiters at a time; cancelling a timer costs next to nothing.
            loop = asyncio.get_running_loop()
            interval = self._settings.redelivery_after_ms / 1000 / 3
            beats: set[asyncio.Task[None]] = set()

            def beat() -> None:
                nonlocal timer
                task = loop.create_task(self._still_waiting(message, topic, group, consumer))
                beats.add(task)
                task.add_done_callback(_beaten(beats, topic, group))
                timer = loop.call_later(interval, beat)

            timer = loop.call_later(interval, beat)
        try:
            await one_at_a_time.acquire()
        finally:
            if timer is not None:
                timer.cancel()
        try:
            yield
        finally:
            one_at_a_time.release()


def _beaten(
    beats: set[asyncio.Task[None]], topic: str, group: str
) -> Callable[[asyncio.Task[None]], None]:
    def done(task: asyncio.Task[None]) -> None:
        beats.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A missed beat costs a redelivery at most, never the event.
            log.debug(
                "could not mark %s/%s as in progress", topic, group, exc_info=task.exception()
            )

    return done
