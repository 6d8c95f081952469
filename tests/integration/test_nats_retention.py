"""NATS: every stream the bus uses is bounded by age (`max_age`), a stream made before
without one included: JetStream otherwise keeps every message for ever."""

from __future__ import annotations

import nats
import pytest

from bus.backends.nats import dead_letter_stream
from tests.integration.conftest import BusFactory, Names, make_event
from tests.polling import eventually

pytestmark = pytest.mark.parametrize("backend", ["nats"])

DAY_S = 86_400


async def test_streams_get_the_retention_of_the_bus(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    older, new, group = names.topic(), names.topic(), names.group()
    client = await nats.connect(backend_url)
    try:
        js = client.jetstream()
        await js.add_stream(name=older, subjects=[older])  # as an earlier version made it

        async def fails(*_: object) -> None:
            raise RuntimeError("to the dead letters")

        publisher = await make_bus(
            (new, fails, group, "c1"),
            stream_retention_s=2 * DAY_S,
            dead_letter_retention_s=9 * DAY_S,
            max_attempts=1,
        )
        await publisher.publish(older, make_event(older, 1))
        await publisher.publish(new, make_event(new, 1))

        assert (await js.stream_info(older)).config.max_age == 2 * DAY_S
        assert (await js.stream_info(new)).config.max_age == 2 * DAY_S
        assert (await js.stream_info(older)).state.messages == 1, "published to it as it is"

        dead = dead_letter_stream(group)

        async def dead_lettered() -> bool | None:
            try:
                return True if (await js.stream_info(dead)).state.messages == 1 else None
            except nats.js.errors.NotFoundError:
                return None

        await eventually(dead_lettered)
        assert (await js.stream_info(dead)).config.max_age == 9 * DAY_S
    finally:
        await client.close()
