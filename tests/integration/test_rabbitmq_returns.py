"""RabbitMQ: an event published to an exchange with no queue bound is returned by the broker,
not kept. The bus must say so (the publish fails), so that the outbox keeps the row and tries
again, rather than count it published and lose it."""

from __future__ import annotations

import pytest

from bus import NotPublished
from tests.integration.conftest import BusFactory, Names, Recorder, make_event

pytestmark = pytest.mark.parametrize("backend", ["rabbitmq"])


async def test_an_event_no_queue_takes_is_not_published(
    backend: str, make_bus: BusFactory, names: Names
) -> None:
    topic, group = names.topic(), names.group()
    publisher = await make_bus()
    early = make_event(topic, 1)
    with pytest.raises(NotPublished, match=f"no queue is bound to {topic}"):
        await publisher.publish(topic, early)
    [refused] = await publisher.publish_many([(topic, make_event(topic, 2))])
    assert isinstance(refused, NotPublished)

    received = Recorder()
    await make_bus((topic, received, group, "c1"))  # declares and binds the group's queue
    await publisher.publish(topic, early)  # as the outbox does: the same event, again
    await received.wait_for_count(1)
    assert [event.id for event, _ in received.received] == [early.id]
