"""Redis Streams: streams are trimmed, and trimming never drops an entry a group still needs.

Retention 1 s here: an entry goes a second after every group is done with it (the publisher
trims; the group's consumer trims its dead letters). One group handles
everything; the other reads five entries and stops: only those five may go, and the slow
group, back, gets every entry it had not read. Dead letters go after their own retention."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from bus.names import dead_letters
from tests.integration.conftest import BusFactory, Names, Recorder, make_event
from tests.integration.native import inject_dead_letter
from tests.polling import eventually

pytestmark = pytest.mark.parametrize("backend", ["redis-streams"])

FAST = {"stream_retention_s": 1, "dead_letter_retention_s": 1, "dead_consumer_after_s": 1}
"""Trims every half second, what is a second old."""


async def test_trimming_keeps_what_any_group_has_not_handled(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    topic, fast_group, slow_group = names.topic(), names.group(), names.group()
    client = redis.from_url(backend_url)
    try:
        slow = Recorder()
        slow_bus = await make_bus((topic, slow, slow_group, "s1"))
        publisher = await make_bus(**FAST)  # a stream is trimmed by its publishers
        early = [make_event(topic, i) for i in range(5)]
        for event in early:
            await publisher.publish(topic, event)
        await slow.wait_for_count(5)
        await slow_bus.close()  # its group stays: a service that is down

        fast = Recorder()
        await make_bus((topic, fast, fast_group, "f1"), **FAST)
        late = [make_event(topic, i) for i in range(5, 15)]
        for event in late:
            await publisher.publish(topic, event)
        await fast.wait_for_count(10)

        async def trimmed_to_what_slow_needs() -> bool | None:
            return True if await client.xlen(topic) == len(late) else None

        await eventually(trimmed_to_what_slow_needs)
        await inject_dead_letter(backend, backend_url, fast_group, b"a dead letter")

        async def dead_letters_gone() -> bool | None:
            return True if await client.xlen(dead_letters(fast_group)) == 0 else None

        await eventually(dead_letters_gone)

        back = Recorder()
        await make_bus((topic, back, slow_group, "s1"))
        await back.wait_for_count(len(late))
        assert sorted(back.ids) == sorted(e.id for e in late)
    finally:
        await client.aclose()
