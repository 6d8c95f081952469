"""Redis Streams keeps a consumer in its group until told otherwise; the bus tells it."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from tests.integration.conftest import BusFactory, Names, Recorder, make_event
from tests.polling import eventually


@pytest.mark.parametrize("backend", ["redis-streams"])
async def test_a_dead_consumer_is_removed_and_a_busy_one_kept(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    topic, group = names.topic(), names.group()
    ghost = Recorder()
    departed = await make_bus((topic, ghost, group, "ghost"))
    publisher = await make_bus()
    await publisher.publish(topic, make_event(topic, 0))
    await ghost.wait_for_count(1)
    await departed.close()  # the ghost's instance is gone; Redis still lists it in the group

    client = redis.from_url(backend_url)
    try:
        # A consumer that still holds an unacknowledged entry: it must not be removed.
        await client.xadd(topic, {b"__data__": make_event(topic, 1).to_json()})
        await client.xreadgroup(group, "holder", {topic: ">"}, count=1)

        survivor = Recorder()
        await make_bus(
            (topic, survivor, group, "survivor"),
            dead_consumer_after_s=1,
            redelivery_after_ms=60_000,
        )

        async def consumers() -> set[str]:
            return {c["name"].decode() for c in await client.xinfo_consumers(topic, group)}

        async def gone(name: str) -> set[str] | None:
            listed = await consumers()
            return listed if name not in listed else None

        assert "holder" in await eventually(lambda: gone("ghost"), within_s=15)
        # A later sweep: a second idle consumer goes, the one holding an entry still stays.
        await client.xgroup_createconsumer(topic, group, "ghost-2")
        assert "holder" in await eventually(lambda: gone("ghost-2"), within_s=15)
    finally:
        await client.aclose()


@pytest.mark.parametrize("backend", ["redis-streams"])
async def test_a_group_found_gone_is_created_again_and_reading_goes_on(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    """The stream deleted under a running consumer (as a Redis without persistence restarts
    empty): the reader creates its group again at the stream's start and reads what is
    published from then on, rather than stop reading for good."""
    topic, group = names.topic(), names.group()
    recorder = Recorder()
    await make_bus((topic, recorder, group, "c-1"))
    publisher = await make_bus()
    await publisher.publish(topic, make_event(topic, 0))
    await recorder.wait_for_count(1)

    client = redis.from_url(backend_url)
    try:
        await client.delete(topic)  # the stream and every group on it
        # The first event after that makes the stream again, without the group; the reader
        # meets NOGROUP, creates it at the start, and gets that event.
        await publisher.publish(topic, make_event(topic, 1))
        await recorder.wait_for_count(2)
        groups = {g["name"].decode() for g in await client.xinfo_groups(topic)}
        assert group in groups
    finally:
        await client.aclose()
