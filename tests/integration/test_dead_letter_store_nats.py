"""NATS dead-letter store edge: a dead-letter stream that exists but holds nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import nats

from bus.backends.nats import dead_letter_stream
from bus.backends.nats.admin import NatsStore
from tests.brokers import Kind


async def test_an_empty_dead_letter_stream_lists_nothing(
    broker_url: Callable[[Kind], str],
) -> None:
    # JetStream reports first_seq 0 for an empty stream; asking for message 0 is a 400.
    url = broker_url("nats")
    group = f"g{uuid.uuid4().hex[:8]}"
    client = await nats.connect(url)
    js = client.jetstream()
    await js.add_stream(name=dead_letter_stream(group), subjects=[f"dlq.{group}"])
    try:
        assert await NatsStore(url).list(group) == []
    finally:
        await js.delete_stream(dead_letter_stream(group))
        await client.drain()
