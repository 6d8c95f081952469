"""NATS: a durable consumer made under another retry budget (an earlier version, other
settings) is updated to this bus's `max_deliver`, keeping what it holds: otherwise JetStream
would stop redelivering an event before the bus's budget ends, and nobody dead-letters it."""

from __future__ import annotations

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bus import BusSettings
from tests.integration.conftest import BusFactory, Names, Recorder, make_event


@pytest.mark.parametrize("backend", ["nats"])
async def test_an_older_consumer_gets_this_budgets_max_deliver(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    topic, group = names.topic(), names.group()
    client = await nats.connect(backend_url)
    try:
        js = client.jetstream()
        await js.add_stream(name=topic, subjects=[topic])
        old = ConsumerConfig(
            durable_name=group,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            max_deliver=6,
        )
        await js.add_consumer(topic, old)
        await js.publish(topic, make_event(topic, 0).to_json(), stream=topic)

        received = Recorder()
        await make_bus((topic, received, group, "c1"))
        await received.wait_for_count(1)  # what the old consumer held is still there
        info = await js.consumer_info(topic, group)
        assert info.config.max_deliver == BusSettings().retry.attempts + 1
    finally:
        await client.drain()
