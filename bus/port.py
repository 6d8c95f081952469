"""The bus port: the one small interface every service talks to, whatever the broker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from contracts.envelope import CloudEvent


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend guarantees. The conformance suite proves each flag, the yes and the no."""

    fan_out: bool
    """Every group subscribed to a topic receives every event."""
    competing_consumers: bool
    """Consumers in one group share the events; False means every consumer gets every event."""
    offline_catch_up: bool
    """Events published while a group has no running consumer wait for it (persistence)."""
    redelivery: bool
    """An event whose handler raised (or whose consumer died) is delivered again."""
    per_key_ordering: bool
    """Events with one key (the order id) stay in order even across several consumers of a
    group. Every backend keeps publish order for a single consumer without failures."""
    ordering: str
    """Human-readable scope of ordering, for docs and `orderbus backends`."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where an event came from, as seen by one consumer."""

    topic: str
    group: str
    consumer: str
    attempt: int | None
    """1 on first delivery, counted up by redeliveries; None where the broker keeps no count
    (Kafka offsets carry none)."""


Handler = Callable[[CloudEvent, Delivery], Awaitable[None]]
"""Handles one event. Returning acknowledges it; raising asks for redelivery where the backend
has it (see `Capabilities.redelivery`); raising `bus.codec.PoisonMessage` (an event that can
never be handled, the reason its message) sends it to the dead letters at once. The event is
a value: never change it, nor its `data`, in place (on the memory bus every group that gets
it shares the one decoded object)."""


@dataclass(frozen=True, slots=True)
class Received:
    """One event of a batch, with where it came from."""

    event: CloudEvent
    delivery: Delivery


BatchHandler = Callable[[Sequence[Received]], Awaitable[None]]
"""Handles a batch of events, in delivery order. Returning acknowledges them all; raising has
the batch handled again one event at a time (each a batch of one), so that only the events
that fail are retried or dead-lettered and the others are acknowledged once. As for
`Handler`, the events are values, never changed in place."""

Middleware = Callable[[Sequence[Received], BatchHandler], Awaitable[None]]
"""Wraps every handler call of a bus: `await middleware(batch, call_next)`. A per-event
handler's call is a batch of one. Raising fails the call, as the handler's own error would."""

Outcome = Literal["handled", "retried", "dead_lettered", "dropped", "dead_letter_failed"]
"""What the bus did with one delivery: acknowledged it after its handler returned; will
deliver it again; moved it to `dlq.<group>`; dropped it (an ephemeral group's, past its
attempts); could not move it to `dlq.<group>` (it comes again, after a backoff)."""

Observer = Callable[[CloudEvent | None, Delivery, Outcome, BaseException | str | None], None]
"""Told of each delivery's outcome, with the error that caused it, if any. The event is None
for a message that is not a valid CloudEvent. Called on the consumer's path: keep it cheap."""


class NotPublished(Exception):
    """The broker answered, and did not keep the event (RabbitMQ: returned, no queue bound).
    Publish it again later: the outbox keeps the row."""


class Bus(Protocol):
    """Publish events to topics; subscribe handlers to topics under a consumer group.

    The group is the service name and the consumer is the instance id: groups fan out, the
    consumers of one group compete. A consumer handles one event (or one batch) at a time, in
    delivery order; scale out with more consumers, not with concurrency inside one. Subscribe
    before `start`; `close` stops taking messages, lets the batches in hand finish, settles
    them and closes the connections.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    async def publish(self, topic: str, event: CloudEvent) -> None:
        """Publish and wait for the broker to accept the event (confirm/ack where it has one)."""
        ...

    async def publish_many(
        self,
        events: Sequence[tuple[str, CloudEvent]],
        *,
        stored: Sequence[bytes] | None = None,
    ) -> Sequence[BaseException | None]:
        """Publish `(topic, event)` pairs in order, pipelined where the backend can keep the
        order (one round trip for the lot on Redis), and wait for the broker's answer to each.
        Returns, per event, None if the broker accepted it or the error; never raises for
        the broker's refusal. Once one fails, the ones after it may have been accepted or
        not: publish them again (consumers' inboxes absorb the duplicates).

        `stored`, one per event, are the bytes each event was decoded from (an outbox's
        rows; `ValueError` before anything is sent if the counts differ): they go to the
        broker as they are, not encoded again, unless publishing stamps the event with a
        trace. The caller vouches that each decodes to its event: the embedded bus hands its
        consumers the event itself, shared, so it must not be changed afterwards."""
        ...

    def subscribe_batch(
        self,
        topic: str,
        handler: BatchHandler,
        *,
        group: str,
        consumer: str,
        ephemeral: bool = False,
    ) -> None:
        """`subscribe` for a handler that takes its events in batches: up to `BUS_BATCH_MAX`,
        what the consumer has fetched, with `BUS_BATCH_LINGER_MS` at most to let a batch
        fill. One batch at a time per subscription, in delivery order; see `BatchHandler`
        for what a failure does."""
        ...

    def use(self, middleware: Middleware) -> None:
        """Wrap every handler call with `middleware` (the first added is the outermost);
        before `start`."""
        ...

    def observe(self, observer: Observer) -> None:
        """Tell `observer` of every delivery's outcome; before `start`."""
        ...

    def subscribe(
        self, topic: str, handler: Handler, *, group: str, consumer: str, ephemeral: bool = False
    ) -> None:
        """Have `handler` receive `topic`'s events as `consumer` of `group`.

        `ephemeral=True` is for a group of one instance's own (`bus.names.instance_group`),
        whose events are live views: the group lives with its consumer rather than on the
        broker after it. It receives what is published after it starts; once no consumer has used it
        for `BUS_EPHEMERAL_EXPIRY_S` the broker may remove it, with what it held; an event
        that exhausts its attempts is logged and dropped, never dead-lettered (a `dlq.<group>`
        would outlive the group). docs/scaling-websockets.md has what each backend does.
        """
        ...

    async def start(self) -> None:
        """Connect, declare topology idempotently, and return once subscriptions are live."""
        ...

    async def ping(self) -> bool:
        """Whether the broker answers now (for readiness probes); never raises."""
        ...

    async def close(self) -> None: ...
