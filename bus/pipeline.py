"""The delivery pipeline: what happens to every message a consumer takes, on every backend.

    taken -> size and envelope checks -> attempt limit -> middlewares -> handler
          -> acknowledged | retried later | dead-lettered (an ephemeral group: dropped)

Written once. A backend supplies only its primitives (`Transport`): a message's body and
attempt, acknowledge, deliver again later, keep alive what waits, where dead letters go. Its
native consumer hands what it fetched to `Pipeline.deliver` and waits; one worker per
subscription handles what waits, a batch at a time, in delivery order.

A batch handler gets up to `BUS_BATCH_MAX` events at once. If it raises, the batch is handled
again one event at a time, so only the events that fail are retried or dead-lettered and the
others are acknowledged once. A per-event handler is called one event at a time. A message
that cannot be an event (too large, not a CloudEvent) is dead-lettered at once with its raw
bytes: retrying cannot mend it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from bus import names, tracing
from bus.codec import PoisonMessage, decode, stored_bodies
from bus.dead_letters import DeadLetter
from bus.logfields import event_fields
from bus.port import (
    BatchHandler,
    Capabilities,
    Delivery,
    Handler,
    Middleware,
    Observer,
    Outcome,
    Received,
)
from bus.settings import BusSettings
from contracts.envelope import CloudEvent

log = logging.getLogger("bus")

M = TypeVar("M")
M_contra = TypeVar("M_contra", contravariant=True)


class Transport(Protocol[M_contra]):
    """What one backend does for one subscription, on its native messages `M`."""

    redelivers_on_a_timer: bool
    """Whether a message held unacknowledged for `BUS_REDELIVERY_AFTER_MS` is handed out
    again (then `keep_alive` is called for what waits its turn)."""

    def body(self, message: M_contra) -> bytes:
        """The message as received; raises `PoisonMessage` if the client library could not
        even read it (the reason names what was wrong)."""
        ...

    async def attempt(self, message: M_contra) -> int | None:
        """1 on first delivery, counted up by redeliveries; None where nobody counts."""
        ...

    def scope(self, message: M_contra) -> Hashable | None:
        """What a retry of `message` holds back with it: later messages of the same scope in
        the batch are left unacknowledged and come again after it (Kafka: the partition,
        whose order is per key). None: nothing is held back."""
        ...

    async def ack(self, messages: Sequence[M_contra]) -> None:
        """Done with: handled, or dead-lettered."""
        ...

    async def retry(self, message: M_contra, delay_s: float) -> None:
        """Deliver `message` again after about `delay_s`, without holding up the others."""
        ...

    async def keep_alive(self, messages: Sequence[M_contra]) -> None:
        """Tell the broker that `messages`, held by a live consumer, wait their turn."""
        ...

    async def dead_letter(self, record: bytes) -> None:
        """Append one record to the group's `dlq.<group>`, confirmed by the broker."""
        ...

    async def release(self, messages: Sequence[M_contra]) -> None:
        """Taken but left unhandled as the consumer closes: for whoever takes them next
        (a broker delivers unacknowledged messages again by itself)."""
        ...


@dataclass(frozen=True)
class Route:
    """One subscription: where from, to which handler, with what around it."""

    topic: str
    group: str
    consumer: str
    handler: Handler | BatchHandler
    batched: bool
    ephemeral: bool
    middlewares: Sequence[Middleware] = ()
    observers: Sequence[Observer] = ()


@dataclass
class _Taken(Generic[M]):
    message: M
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _Item(Generic[M]):
    taken: _Taken[M]
    received: Received


@dataclass
class _Rejected(Generic[M]):
    """A message for the dead letters without being handled: not an event, or out of
    attempts."""

    taken: _Taken[M]
    body: bytes
    delivery: Delivery
    attempts: int
    error: BaseException | str
    event: CloudEvent | None


class Pipeline(Generic[M]):
    def __init__(
        self,
        route: Route,
        transport: Transport[M],
        settings: BusSettings,
        capabilities: Capabilities,
        system: str,
        decoder: Callable[[M, bytes], CloudEvent] | None = None,
    ) -> None:
        """`decoder`: the event of a message, given its body (default: `bus.codec.decode`
        within `BUS_MAX_EVENT_BYTES`); raises `PoisonMessage` as `decode` does."""
        self.route = route
        self._transport = transport
        self._settings = settings
        self._retry = settings.retry
        self._capabilities = capabilities
        self._system = system
        self._decoder = decoder
        self._call = _chain(route, system)
        self._queue: deque[_Taken[M]] = deque()
        self._waiting: dict[int, M] = {}
        """Taken and not yet being handled: what `keep_alive` is for."""
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._beats: asyncio.Task[None] | None = None
        self._closing = False
        self._settled: set[int] = set()
        """Messages of the batch in hand that were acknowledged, retried or dead-lettered."""
        self._failures = 0
        """Batches in a row the bus could not settle (for its backoff)."""

    async def deliver(self, messages: Sequence[M]) -> None:
        """Hand over what the consumer fetched, in delivery order; return once every message
        has been dealt with (acknowledged, retried, dead-lettered) or left for redelivery
        because the pipeline closed."""
        if self._closing or not messages:
            return  # unacknowledged: the broker delivers them again
        taken = self._enqueue(messages)
        # Settled in the order they were queued, so the last one done means all are; shielded,
        # as a caller's cancellation must not cancel what the worker settles.
        await asyncio.shield(taken[-1].done)

    async def hand_over(self, message: M) -> None:
        """For a broker that pushes one message at a time and takes no acknowledgement
        (pub/sub): queue it and return at once while fewer than `BUS_PREFETCH` wait, so that
        what arrives meanwhile makes a batch; past that bound, wait for this one."""
        if self._closing:
            return
        [taken] = self._enqueue([message])
        if len(self._queue) >= self._settings.prefetch:
            await asyncio.shield(taken.done)

    def _enqueue(self, messages: Sequence[M]) -> list[_Taken[M]]:
        taken = [_Taken(m) for m in messages]
        for t in taken:
            self._queue.append(t)
            self._waiting[id(t.message)] = t.message
        self._wake.set()
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name=f"pipeline {self._name}")
            if self._transport.redelivers_on_a_timer:
                self._beats = asyncio.create_task(self._keep_alive(), name=f"beats {self._name}")
        return taken

    @property
    def _name(self) -> str:
        return f"{self.route.topic}/{self.route.group}"

    async def close(self) -> None:
        """Take nothing more; let the batch in hand finish (the caller bounds the wait); what
        waits behind it is left unacknowledged, for the broker to deliver again."""
        self._closing = True
        self._wake.set()
        if self._worker is not None:
            await asyncio.shield(self._worker)
        if self._beats is not None:
            self._beats.cancel()
            await asyncio.wait([self._beats], timeout=1)

    # -- the worker ------------------------------------------------------------------------

    async def _work(self) -> None:
        try:
            while not self._closing:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                limit = self._settings.batch_max if self.route.batched else len(self._queue)
                if self.route.batched and len(self._queue) < limit:
                    await self._linger(limit)
                batch = [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]
                self._settled.clear()
                try:
                    await self._handle(batch)
                except Exception as error:  # noqa: BLE001 - the bus's own: the broker, the DLQ
                    await self._unsettled(batch, error)
                finally:
                    for t in batch:
                        self._waiting.pop(id(t.message), None)
                        if not t.done.done():
                            t.done.set_result(None)
        finally:
            left = list(self._queue)
            self._queue.clear()
            self._waiting.clear()
            if left:
                with contextlib.suppress(Exception):  # a broker delivers them again anyway
                    await self._transport.release([t.message for t in left])
            for t in left:
                if not t.done.done():
                    t.done.set_result(None)

    async def _unsettled(self, batch: list[_Taken[M]], error: Exception) -> None:
        """The bus itself failed mid-batch (acknowledging, dead-lettering): what was not
        settled is delivered again later, and this consumer backs off meanwhile, so a broker
        or dead-letter queue that keeps failing is not hammered in a loop."""
        delay = self._retry.delay_s(1 + min(self._failures, 10))
        self._failures += 1
        log.error(
            "%s: could not settle a batch (%s); delivering its rest again in %.2fs",
            self._name,
            type(error).__name__,
            delay,
            exc_info=error,
        )
        for t in batch:
            if id(t.message) not in self._settled:
                with contextlib.suppress(Exception):
                    await self._transport.retry(t.message, delay)
        await asyncio.sleep(delay)

    async def _linger(self, limit: int) -> None:
        linger_s = self._settings.batch_linger_ms / 1000
        if linger_s <= 0:
            return
        deadline = asyncio.get_running_loop().time() + linger_s
        while len(self._queue) < limit and not self._closing:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._wake.wait()
            if asyncio.get_running_loop().time() >= deadline:
                return

    async def _handle(self, batch: list[_Taken[M]]) -> None:
        # Every outcome is settled in delivery order: on Kafka an acknowledgement is an
        # offset, and one acknowledged ahead of those before it would skip them after a crash.
        accepted = [await self._accept(t) for t in batch]
        items = [a for a in accepted if isinstance(a, _Item)]
        if self.route.batched and len(items) > 1:
            for item in items:
                self._waiting.pop(id(item.taken.message), None)
            try:
                await self._call([i.received for i in items])
            except Exception:  # noqa: BLE001 - isolated below, one event at a time
                log.debug("batch of %d on %s failed; one at a time now", len(items), self._name)
                for item in items:
                    self._waiting[id(item.taken.message)] = item.taken.message
            else:
                for rejected in accepted:
                    if isinstance(rejected, _Rejected):
                        await self._dead_letter(rejected, acknowledge=False)
                await self._acknowledge(accepted)
                return
        held: set[Hashable] = set()
        for one in accepted:
            message = one.taken.message
            scope = self._transport.scope(message)
            if scope is not None and scope in held:
                continue  # behind a retry of its scope: delivered again after it
            self._waiting.pop(id(message), None)
            if isinstance(one, _Rejected):
                await self._dead_letter(one)
                continue
            try:
                await self._call([one.received])
            except Exception as failure:  # noqa: BLE001 - every failure gets the policy
                if await self._failed(one, failure) == "retried" and scope is not None:
                    held.add(scope)
            else:
                # At once, not with the rest: the broker's clock runs for what is unsettled.
                await self._acknowledge([one])

    async def _accept(self, taken: _Taken[M]) -> _Item[M] | _Rejected[M]:
        """The message as an event to handle, or why it goes to the dead letters unhandled."""
        message = taken.message
        attempt = await self._transport.attempt(message)
        delivery = Delivery(self.route.topic, self.route.group, self.route.consumer, attempt)
        body = b""
        try:
            body = self._transport.body(message)
            if self._decoder is None:
                event = decode(body, self._settings.max_event_bytes)
            else:
                event = self._decoder(message, body)
        except PoisonMessage as poison:
            return _Rejected(taken, body or poison.raw, delivery, attempt or 1, poison, None)
        if attempt is not None and attempt > self._retry.attempts:
            # Delivered past the limit without an outcome: its handler never returned, most
            # likely because the consumer died inside it. Do not try it again.
            return _Rejected(
                taken,
                body,
                delivery,
                attempt - 1,
                "no outcome after the last attempt (did the consumer die?)",
                event,
            )
        return _Item(taken, Received(event, delivery))

    async def _acknowledge(self, settled: Sequence[_Item[M] | _Rejected[M]]) -> None:
        """Acknowledge `settled` (handled, or dead-lettered already) in one call."""
        if not settled:
            return
        await self._transport.ack([s.taken.message for s in settled])
        self._failures = 0
        self._settled.update(id(s.taken.message) for s in settled)
        for item in settled:
            if isinstance(item, _Item):
                self._tell(item.received.event, item.received.delivery, "handled", None)

    async def _failed(self, item: _Item[M], failure: Exception) -> Outcome:
        event, delivery = item.received.event, item.received.delivery
        policy = self._retry
        n = delivery.attempt or 1
        if (
            isinstance(failure, PoisonMessage)
            or not self._capabilities.redelivery
            or policy.gives_up(n)
        ):
            body = self._transport.body(item.taken.message)
            return await self._dead_letter(_Rejected(item.taken, body, delivery, n, failure, event))
        delay = policy.delay_s(n)
        log.warning(
            "handler failed for %s %s on %s/%s (attempt %d of %d): %s; retrying in %.2fs",
            event.type,
            event.id,
            delivery.group,
            delivery.consumer,
            n,
            policy.attempts,
            failure,
            delay,
            extra=self._fields("retry", event, n),
        )
        await self._transport.retry(item.taken.message, delay)
        self._settled.add(id(item.taken.message))
        self._tell(event, delivery, "retried", failure)
        return "retried"

    async def _dead_letter(self, rejected: _Rejected[M], *, acknowledge: bool = True) -> Outcome:
        """Park `rejected` in `dlq.<group>` (an ephemeral group: drop it); acknowledge it
        unless the caller does, in delivery order with the rest of its batch."""
        message, body, delivery = rejected.taken.message, rejected.body, rejected.delivery
        attempts, error, event = rejected.attempts, rejected.error, rejected.event
        event_id = str(event.id) if event is not None else None
        if self.route.ephemeral:
            # A dlq.<group> would outlive the group it is named after, for events that were
            # only a live view: drop it, loudly.
            log.error(
                "dropped %s from ephemeral %s after %d attempt(s): %s",
                event_id or "a message",
                self._name,
                attempts,
                error,
                extra=self._fields("drop", event, attempts),
            )
            if acknowledge:
                await self._transport.ack([message])
                self._settled.add(id(message))
            self._tell(event, delivery, "dropped", error)
            return "dropped"
        record = DeadLetter.of(
            body,
            topic=self.route.topic,
            group=self.route.group,
            consumer=self.route.consumer,
            attempts=attempts,
            error=error,
            event_id=event_id,
        )
        try:
            await self._transport.dead_letter(record.fitted(self._settings.dead_letter_max_bytes))
        except Exception as failure:
            # Not settled: `_unsettled` backs off and the message comes again.
            self._tell(event, delivery, "dead_letter_failed", failure)
            raise
        if acknowledge:
            await self._transport.ack([message])
            self._settled.add(id(message))
        log.error(
            "dead-lettered %s from %s after %d attempt(s): %s",
            event_id or "a message",
            self._name,
            attempts,
            record.error,
            extra=self._fields("dead_letter", event, attempts),
        )
        self._tell(event, delivery, "dead_lettered", error)
        return "dead_lettered"

    def _tell(
        self,
        event: CloudEvent | None,
        delivery: Delivery,
        outcome: Outcome,
        error: BaseException | str | None,
    ) -> None:
        for observer in self.route.observers:
            try:
                observer(event, delivery, outcome, error)
            except Exception:  # an observer's bug must not change what happens to events
                log.exception("observer of %s failed", self._name)

    def _fields(self, action: str, event: CloudEvent | None, attempt: int) -> dict[str, object]:
        return event_fields(
            action,  # type: ignore[arg-type]
            event,
            topic=self.route.topic,
            service=self.route.group,
            instance=self.route.consumer,
            attempt=attempt,
        )

    async def _keep_alive(self) -> None:
        """Every third of `BUS_REDELIVERY_AFTER_MS`, tell the broker that what this consumer
        holds and has not started on is alive: otherwise the broker's clock, running since
        delivery, hands it out again and counts an attempt before its handler even started."""
        interval = self._settings.redelivery_after_ms / 1000 / 3
        while not self._closing:
            await asyncio.sleep(interval)
            waiting = list(self._waiting.values())
            if not waiting:
                continue
            try:
                await self._transport.keep_alive(waiting)
            except Exception:  # noqa: BLE001 - a missed beat costs a redelivery at most
                log.debug("could not keep %d events of %s alive", len(waiting), self._name)


def _chain(route: Route, system: str) -> BatchHandler:
    """The handler as a batch handler, inside the middlewares (the first added outermost)."""
    if route.batched:
        call: BatchHandler = route.handler  # type: ignore[assignment]
    else:
        handler: Handler = route.handler  # type: ignore[assignment]

        async def call(batch: Sequence[Received]) -> None:
            for received in batch:  # a batch of one, from the pipeline
                event, delivery = received.event, received.delivery
                with tracing.handling(
                    delivery.topic, delivery.group, delivery.consumer, event, delivery.attempt,
                    system,
                ):  # fmt: skip
                    await handler(event, delivery)

    for middleware in reversed(route.middlewares):
        call = _wrapped(middleware, call)
    return call


def _wrapped(middleware: Middleware, inner: BatchHandler) -> BatchHandler:
    async def call(batch: Sequence[Received]) -> None:
        await middleware(batch, inner)

    return call


class Routing:
    """What the port does alike on every backend: each subscription becomes a `Route` that
    carries the bus's middlewares and observers (`_routed` is the backend's), and a batch of
    publishes goes out one after the other unless the backend pipelines it."""

    def __init__(self) -> None:
        # Routes hold these lists themselves: middlewares and observers added later apply too.
        self._middlewares: list[Middleware] = []
        self._observers: list[Observer] = []

    def subscribe(
        self, topic: str, handler: Handler, *, group: str, consumer: str, ephemeral: bool = False
    ) -> None:
        self._route(topic, handler, False, group, consumer, ephemeral)

    def subscribe_batch(
        self,
        topic: str,
        handler: BatchHandler,
        *,
        group: str,
        consumer: str,
        ephemeral: bool = False,
    ) -> None:
        self._route(topic, handler, True, group, consumer, ephemeral)

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await self._publish_event(topic, event, None)

    async def _publish_event(self, topic: str, event: CloudEvent, stored: bytes | None) -> None:
        """Publish `event`, as `stored` if that is given and nothing stamps the event
        (`bus.codec.encoded`), and wait for the broker to accept it."""
        raise NotImplementedError

    async def publish_many(
        self,
        events: Sequence[tuple[str, CloudEvent]],
        *,
        stored: Sequence[bytes] | None = None,
    ) -> Sequence[BaseException | None]:
        outcomes: list[BaseException | None] = []
        for (topic, event), body in zip(events, stored_bodies(events, stored), strict=True):
            try:
                await self._publish_event(topic, event, body)
            except Exception as exc:  # noqa: BLE001 - the caller's to handle, per event
                # The rest is not tried: in order, nothing may overtake what failed.
                return outcomes + [exc] * (len(events) - len(outcomes))
            outcomes.append(None)
        return outcomes

    def use(self, middleware: Middleware) -> None:
        self._middlewares.append(middleware)

    def observe(self, observer: Observer) -> None:
        self._observers.append(observer)

    def _route(
        self,
        topic: str,
        handler: Handler | BatchHandler,
        batched: bool,
        group: str,
        consumer: str,
        ephemeral: bool,
    ) -> None:
        self._routed(
            Route(
                names.check_topic(topic),
                names.check_group(group),
                names.check_consumer(consumer),
                handler,
                batched,
                ephemeral,
                self._middlewares,
                self._observers,
            )
        )

    def _routed(self, route: Route) -> None:
        raise NotImplementedError
