"""NATS JetStream: a persistent stream per topic, durable pull consumers per group.

URL: `nats://[user:password@]host:port` (default `nats://127.0.0.1:4222`). The topic is both
the subject and the JetStream stream name; each group is a durable pull consumer named after
it (NATS forbids dots there, which `bus.names` enforces); instances of a group pull from it.

| feature | |
|---|---|
| fan-out across groups | yes: one durable consumer per service |
| competing consumers | yes: every instance pulls from the group's durable consumer |
| offline catch-up | yes: the durable consumer remembers what the group acknowledged |
| redelivery | yes: a nak'd event at once, an unacknowledged one after `BUS_REDELIVERY_AFTER_MS` |
| ordering | per stream, with one consumer |
"""

from __future__ import annotations

from typing import Any, ClassVar

from faststream import AckPolicy, StreamMessage
from faststream.nats import JStream, NatsBroker, PullSub
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from bus.backends._faststream import Adapt, FastStreamBus
from bus.port import Capabilities


class NatsBus(FastStreamBus[NatsBroker]):
    name: ClassVar[str] = "nats"
    capabilities: ClassVar[Capabilities] = Capabilities(
        fan_out=True,
        competing_consumers=True,
        offline_catch_up=True,
        redelivery=True,
        per_key_ordering=False,
        ordering="per stream, with one consumer",
    )

    def _create_broker(self, url: str, **common: Any) -> NatsBroker:
        self._declared: set[str] = set()
        return NatsBroker(url, **common)

    def _register(self, topic: str, group: str, consumer: str, adapt: Adapt) -> None:
        self._broker.subscriber(
            topic,
            stream=JStream(topic, subjects=[topic]),
            durable=group,
            pull_sub=PullSub(batch_size=self._settings.prefetch, timeout=1.0),
            config=ConsumerConfig(
                durable_name=group,
                ack_policy=JsAckPolicy.EXPLICIT,
                ack_wait=self._settings.redelivery_after_ms / 1000,
                # Bounds what a group has in flight across all its instances.
                max_ack_pending=self._settings.prefetch * 64,
                deliver_policy=DeliverPolicy.ALL,
            ),
            # NACK_ON_ERROR naks for an immediate redelivery; the default would `term` it.
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )(adapt(self._attempt))
        self._declared.add(topic)

    async def _attempt(self, message: StreamMessage[Any]) -> int:
        return int(message.raw_message.metadata.num_delivered)

    async def _publish(self, topic: str, body: bytes, key: str) -> None:
        if topic not in self._declared:
            # A JetStream publish to a subject no stream captures fails: create it first.
            js = self._broker.config.connection_state.stream
            await js.add_stream(name=topic, subjects=[topic])
            self._declared.add(topic)
        # With `stream=`, FastStream publishes through JetStream and awaits its PubAck.
        await self._broker.publish(body, subject=topic, stream=topic)
