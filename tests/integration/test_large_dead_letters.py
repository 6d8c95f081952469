"""A dead letter always fits its queue: an event near the size limit whose record, quoting it,
would not (JSON escapes a body of quotes to twice its size, past Kafka's request limit and
NATS's `max_payload`) is dead-lettered with its envelope cut short and marked so, and the
events behind it flow on. Before, Kafka re-read the event at once for ever and NATS gave it
up silently after `max_deliver`."""

from __future__ import annotations

import hashlib
import json

import pytest

from bus import BACKENDS, Delivery
from bus.dead_letters import DeadLetter
from contracts import CloudEvent
from tests.integration.conftest import BusFactory, Names, Recorder, make_event
from tests.integration.native import read_dead_letters
from tests.polling import eventually

QUOTES = 300_000
"""A body of quotes: about 600 KB as an event, over 1.2 MB quoted again in a record."""


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b not in ("memory", "redis-pubsub")])
async def test_a_record_too_large_to_quote_in_full_is_cut_and_the_flow_goes_on(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    topic, group = names.topic(), names.group()
    handled = Recorder()

    async def refuse_the_big_one(event: CloudEvent, delivery: Delivery) -> None:
        if "quotes" in event.data:
            raise RuntimeError("no room for this one")
        await handled(event, delivery)

    await make_bus((topic, refuse_the_big_one, group, "c1"), max_attempts=1)
    publisher = await make_bus()
    big = make_event(topic, 0, quotes='"' * QUOTES)
    original = big.to_json()
    assert 500_000 < len(original) < 1_048_576, "the event itself fits"
    await publisher.publish(topic, big)
    after = [make_event(topic, i) for i in range(1, 6)]
    for event in after:
        await publisher.publish(topic, event)

    await handled.wait_for_count(len(after))

    async def one_letter() -> list[DeadLetter] | None:
        letters = await read_dead_letters(backend, backend_url, group)
        return letters or None

    [letter] = await eventually(one_letter, 60)
    assert letter.event_id == str(big.id)
    assert letter.truncated
    assert letter.envelope_bytes == len(original)
    assert letter.envelope_sha256 == hashlib.sha256(original).hexdigest()
    assert original.decode().startswith(letter.envelope)
    assert 0 < len(letter.envelope) < len(original)
    assert len(json.dumps(letter.model_dump(mode="json"))) < 1_048_576
