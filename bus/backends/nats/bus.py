"""NATS JetStream: a persistent stream per topic, durable pull consumers per group.

URL: `nats://[user:password@]host:port` (default `nats://127.0.0.1:4222`). The topic is both
the subject and the JetStream stream name; each group is a durable pull consumer named after
it (NATS forbids dots there, which `bus.names` enforces); instances of a group pull from it.

| feature | |
|---|---|
| fan-out across groups | yes: one durable consumer per service |
| competing consumers | yes: every instance pulls from the group's durable consumer |
| offline catch-up | yes: the durable consumer remembers what the group acknowledged |
| redelivery | yes: a failed event after a backoff (`nak` with a delay), an |
|            | unacknowledged one after `BUS_REDELIVERY_AFTER_MS` |
| ordering | per stream, with one consumer |

An ephemeral group (`Bus.subscribe`) is a durable consumer with `inactive_threshold`
(`BUS_EPHEMERAL_EXPIRY_S`): JetStream deletes it once nothing has pulled from it that long.
Streams keep limits retention with `max_age` (`BUS_STREAM_RETENTION_S`, dead letters
`BUS_DEAD_LETTER_RETENTION_S`), so a consumer, live or left behind, never holds a message in
the stream (nor keeps one past its age); what a left-behind one costs is its own state,
until it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, ClassVar

from faststream import AckPolicy, StreamMessage
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.subscriber.usecases import BatchPullStreamSubscriber
from nats.aio.msg import Msg
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from bus import names
from bus.backends._faststream import PING_TIMEOUT_S, FastStreamBus, documented
from bus.backends.nats import BACKEND, dead_letter_stream
from bus.backends.nats.fetch import ReadyBatchPullSubscriber
from bus.pipeline import Pipeline, Route
from bus.port import Capabilities

log = logging.getLogger("bus")

FETCH_WINDOW_S = 0.1
"""Longest an idle pull waits for a first message before asking again (see `_register`)."""

PUBLISH_TIMEOUT_S = 5.0
"""The most a publish waits for JetStream's PubAck (nats-py's own request timeout). Not
FastStream's default for an awaited publish, 0.5 s: a broker under load answers later than
that, and the publish would fail although JetStream stored the event."""

STREAM_NAME_IN_USE = 10058
"""JetStream's error code: a stream of that name exists with another configuration."""


async def _raw(message: list[Msg]) -> StreamMessage[list[Msg]]:
    """FastStream's parser, skipped: the pipeline reads the messages themselves."""
    return StreamMessage(raw_message=message, body=b"")


class _Transport:
    redelivers_on_a_timer = True

    def __init__(self, bus: NatsBus, route: Route) -> None:
        self._bus = bus
        self._route = route

    def body(self, message: Msg) -> bytes:
        return bytes(message.data)

    async def attempt(self, message: Msg) -> int:
        return int(message.metadata.num_delivered)

    def scope(self, message: Msg) -> None:
        return None

    async def ack(self, messages: Sequence[Msg]) -> None:
        for message in messages:
            await message.ack()

    async def retry(self, message: Msg, delay_s: float) -> None:
        await message.nak(delay=delay_s)  # JetStream redelivers after the delay itself

    async def keep_alive(self, messages: Sequence[Msg]) -> None:
        for message in messages:
            await message.in_progress()  # "+WPI": JetStream restarts its ack wait

    async def dead_letter(self, record: bytes) -> None:
        await self._bus._publish_dead_letter(self._route.group, record)

    async def release(self, messages: Sequence[Any]) -> None:
        return  # unacknowledged: the broker delivers them again


class NatsBus(FastStreamBus[NatsBroker]):
    name: ClassVar[str] = BACKEND.name
    capabilities: ClassVar[Capabilities] = BACKEND.capabilities

    @staticmethod
    def publisher_arguments(topic: str) -> dict[str, Any]:
        return {"subject": topic}

    def _create_broker(self, url: str, **common: Any) -> NatsBroker:
        self._declared: set[str] = set()
        self._ephemeral: list[tuple[str, str, ConsumerConfig]] = []  # (stream, group, config)
        self._durable: list[tuple[str, str, ConsumerConfig]] = []
        self._keeper: asyncio.Task[None] | None = None
        self._pong: asyncio.Future[bool] | None = None  # the readiness PING waiting for its PONG
        self._pong_sent_at = 0.0
        return NatsBroker(url, **common)

    def _register(self, route: Route) -> None:
        topic, group, ephemeral = route.topic, route.group, route.ephemeral
        config = ConsumerConfig(
            durable_name=group,
            ack_policy=JsAckPolicy.EXPLICIT,
            ack_wait=self._settings.redelivery_after_ms / 1000,
            # Bounds what a group has in flight across all its instances.
            max_ack_pending=self._settings.prefetch * 64,
            # A net under our own limit: past it JetStream stops delivering, so even a
            # message that kills its consumer every time is not redelivered forever.
            max_deliver=self._settings.retry.attempts + 1,
            # A new ephemeral group would otherwise replay the whole stream.
            deliver_policy=DeliverPolicy.NEW if ephemeral else DeliverPolicy.ALL,
            inactive_threshold=float(self._settings.ephemeral_expiry_s) if ephemeral else None,
        )
        (self._ephemeral if ephemeral else self._durable).append((topic, group, config))
        pipeline = self._pipeline(route, _Transport(self, route))
        subscriber = self._broker.subscriber(
            topic,
            # Declared by `_declare` (created if missing, never changed: a stream's
            # configuration is for its publishers, `_ensure_stream`).
            stream=JStream(topic, subjects=[topic], declare=False),
            durable=group,
            # A batch is what has arrived (`ReadyBatchPullSubscriber`, below); the timeout
            # is how long an idle pull waits for a first message: ten pull requests a second
            # from an idle consumer, and a stop never waits longer.
            pull_sub=PullSub(
                batch_size=self._settings.prefetch,
                timeout=min(FETCH_WINDOW_S, self._settings.redelivery_after_ms / 1000 / 5),
                batch=True,
            ),
            config=config,
            # MANUAL: the pipeline acknowledges, naks with a delay for a retry, and marks
            # what waits as in progress.
            ack_policy=AckPolicy.MANUAL,
            parser=_raw,
            no_reply=True,  # a message's reply subject names no destination of ours
        )
        # FastStream's own batch loop waits for a full batch or the timeout (fetch.py).
        assert isinstance(subscriber, BatchPullStreamSubscriber)
        subscriber.__class__ = ReadyBatchPullSubscriber
        subscriber(documented(_deliver(pipeline), route))

    async def _declare(self) -> None:
        for topic in {stream for stream, _, _ in (*self._ephemeral, *self._durable)}:
            await self._ensure_stream(topic, topic, self._settings.stream_retention_s, own=False)
        # nats-py uses a consumer that exists as it is. An ephemeral one declared without
        # this expiry (an earlier version, another BUS_EPHEMERAL_EXPIRY_S) would never go:
        # it holds nothing worth keeping, so delete it and let the subscriber create it anew.
        js = self._broker.config.connection_state.stream
        for stream, group, config in self._ephemeral:
            try:
                found = await js.consumer_info(stream, group)
            except NotFoundError:  # no such consumer, or no stream yet
                continue
            if found.config.inactive_threshold != config.inactive_threshold:
                await js.delete_consumer(stream, group)
                log.info("recreating ephemeral consumer %s on %s", group, stream)
        # A durable one keeps what it holds, so it is updated, not replaced: its
        # `max_deliver` must follow the retry budget, or JetStream stops redelivering before
        # the bus would dead-letter (a consumer made under another budget).
        for stream, group, config in self._durable:
            try:
                found = await js.consumer_info(stream, group)
            except NotFoundError:
                continue
            if found.config.max_deliver != config.max_deliver:
                await js.add_consumer(stream, found.config.evolve(max_deliver=config.max_deliver))
                log.info(
                    "consumer %s on %s: max_deliver %s -> %s",
                    group,
                    stream,
                    found.config.max_deliver,
                    config.max_deliver,
                )

    async def start(self) -> None:
        await super().start()
        if self._ephemeral:
            self._keeper = asyncio.create_task(self._keep_ephemeral_consumers())

    async def _round_trip(self) -> bool:
        # PING, and wait for the server's PONG. Not with the client's flush(): when it times
        # out it cancels its PONG's future but leaves it queued, and the late PONG then fails
        # on it and ends the client's read loop for good (nats-py 2.16), while later flushes
        # pass without a round trip. So this future is never cancelled (ping() waits on it
        # through a shield): a check that times out leaves it waiting, the next one waits on
        # it again, and a new PING goes once it is answered or older than a check (a reconnect
        # drops the client's queue of PONG futures, and with it this one).
        connection = self._broker._connection
        if connection is None or not connection.is_connected:
            return False
        loop = asyncio.get_running_loop()
        pong = self._pong
        if pong is None or pong.done() or loop.time() - self._pong_sent_at > PING_TIMEOUT_S:
            pong = self._pong = loop.create_future()
            self._pong_sent_at = loop.time()
            await connection._send_ping(pong)
        return await asyncio.shield(pong)

    async def close(self) -> None:
        self._started = False  # the keeper's loop ends at its next round
        if self._keeper is not None:
            self._keeper.cancel()
            # Bounded, as Redis Streams' loops: it stops by itself once the bus is closed.
            await asyncio.wait([self._keeper], timeout=2)
        await super().close()

    async def _keep_ephemeral_consumers(self) -> None:
        """JetStream deletes an ephemeral consumer of a live instance too, when nothing pulled
        from it for the expiry: a connection cut that long, a handler holding its batch that
        long. nats-py's fetches then time out forever, without an error: create it again."""
        js = self._broker.config.connection_state.stream
        every_s = max(0.5, min(60.0, self._settings.ephemeral_expiry_s / 4))
        while self._started:
            await asyncio.sleep(every_s)
            for stream, group, config in self._ephemeral:
                try:
                    await js.consumer_info(stream, group)
                except NotFoundError:
                    with contextlib.suppress(Exception):  # no stream, no connection: next round
                        await js.add_consumer(stream, config)
                        log.warning(
                            "ephemeral consumer %s on %s had expired: created again", group, stream
                        )
                except Exception:  # the broker is away: try next round
                    log.debug("cannot check consumer %s on %s", group, stream, exc_info=True)

    async def _publish(self, topic: str, body: bytes, key: str) -> None:
        await self._ensure_stream(topic, topic, self._settings.stream_retention_s, own=True)
        # On nats-py's JetStream context, as `_start_publish`: FastStream's publish builds a
        # command and headers and runs its middlewares per event, more than the publish itself.
        js = self._broker.config.connection_state.stream
        await js.publish(topic, body, stream=topic, timeout=PUBLISH_TIMEOUT_S)

    confirms_apart: ClassVar[bool] = True

    async def _start_publish(self, topic: str, body: bytes, key: str) -> Awaitable[object]:
        """Sent with a reply subject of its own (nats-py's `publish_async`), in call order on
        the one connection; the PubAck is awaited later, for `PUBLISH_TIMEOUT_S` at most."""
        await self._ensure_stream(topic, topic, self._settings.stream_retention_s, own=True)
        js = self._broker.config.connection_state.stream
        acked = await js.publish_async(topic, body, stream=topic, wait_stall=PUBLISH_TIMEOUT_S)
        return asyncio.wait_for(acked, PUBLISH_TIMEOUT_S)

    async def _publish_dead_letter(self, group: str, body: bytes) -> None:
        subject = names.dead_letters(group)
        stream = dead_letter_stream(group)
        await self._ensure_stream(stream, subject, self._settings.dead_letter_retention_s, own=True)
        await self._broker.publish(body, subject=subject, stream=stream, timeout=PUBLISH_TIMEOUT_S)

    async def _ensure_stream(self, stream: str, subject: str, max_age_s: int, *, own: bool) -> None:
        """Create `stream` if missing. One that exists under another configuration (an
        earlier version's, another retention) is brought to this one by its publishers
        (`own`) and left as it is by its readers: with a broker user per service, only a
        stream's publishers may change it (deploy/brokers)."""
        if own and stream in self._declared:
            return
        # A JetStream publish to a subject no stream captures fails: create it first.
        js = self._broker.config.connection_state.stream
        config = StreamConfig(name=stream, subjects=[subject], max_age=max_age_s)
        try:
            await js.add_stream(config)
        except BadRequestError as exc:
            if exc.err_code != STREAM_NAME_IN_USE:
                raise
            if own:
                await js.update_stream(config)
        if own:
            self._declared.add(stream)


def _deliver(pipeline: Pipeline[Msg]) -> Any:
    async def deliver(message: StreamMessage[list[Msg]]) -> None:
        await pipeline.deliver(message.raw_message)

    return deliver
