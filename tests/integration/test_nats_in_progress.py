"""NATS: an event waiting its turn behind slow handlers is not handed to another consumer."""

from __future__ import annotations

import asyncio

import pytest

from bus import Delivery
from contracts import CloudEvent
from tests.integration.conftest import BusFactory, Names, Recorder, make_event


@pytest.mark.parametrize("backend", ["nats"])
async def test_a_waiting_event_is_marked_in_progress_not_redelivered(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    # JetStream's ack-wait clock runs from delivery. Without "+WPI" while an event waits
    # behind its batch, the idle consumer c2 would be handed a second copy (counted by the
    # server as a new delivery) before c1 even started the event's handler.
    topic, group = names.topic(), names.group()
    handled = Recorder()

    async def slow(event: CloudEvent, delivery: Delivery) -> None:
        await asyncio.sleep(0.3)
        await handled(event, delivery)

    settings = {"prefetch": 5, "redelivery_after_ms": 500}
    await make_bus((topic, slow, group, "c1"), **settings)
    publisher = await make_bus()
    sent = [make_event(topic, i) for i in range(5)]
    for event in sent:
        await publisher.publish(topic, event)
    await handled.wait_for_count(1)  # c1 has its batch; c2 now waits with a pull of its own
    await make_bus((topic, slow, group, "c2"), **settings)

    await handled.wait_until(lambda: {e.id for e in sent} <= set(handled.ids))
    # A second copy would have reached idle c2 about 0.5 s after delivery, before c1 got to
    # the last of its batch (about 1.2 s): it would be in `handled` by now.
    assert sorted(handled.ids) == sorted(e.id for e in sent), "each handled once"
    assert {d.attempt for _, d in handled.received} == {1}
