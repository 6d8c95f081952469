"""RabbitMQ: listing dead letters takes nothing away. A queue cannot be browsed, so the tools
take each message; putting it back by requeueing would count a delivery every time, and a
quorum queue drops a message past its delivery limit (20 by default on RabbitMQ 4). Here the
limit is 2, set on the queue, so a requeueing listing loses them by the third look."""

from __future__ import annotations

import aio_pika
import pytest

from bus import BusSettings
from bus.dead_letters import DeadLetter, open_store
from bus.names import dead_letters
from tests.integration.conftest import Names
from tests.integration.native import inject_dead_letter

pytestmark = pytest.mark.parametrize("backend", ["rabbitmq"])


async def test_listing_many_times_keeps_every_dead_letter(
    backend: str, backend_url: str, names: Names
) -> None:
    group = names.group()
    queue = dead_letters(group)
    connection = await aio_pika.connect(backend_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(
            queue, durable=True, arguments={"x-queue-type": "quorum", "x-delivery-limit": 2}
        )
        letters = [
            DeadLetter.of(
                f'{{"n": {n}}}'.encode(),
                topic="t",
                group=group,
                consumer="c1",
                attempts=3,
                error="broken",
            )
            for n in range(3)
        ]
        for letter in letters:
            await inject_dead_letter(backend, backend_url, group, letter.to_json())
        store = open_store(BusSettings(backend=backend, url=backend_url))

        for _ in range(5):
            assert sorted(s.ref for s in await store.list(group)) == sorted(
                str(letter.id) for letter in letters
            )

        assert await store.remove(group, {str(letters[0].id)}) == 1
        assert sorted(s.ref for s in await store.list(group)) == sorted(
            str(letter.id) for letter in letters[1:]
        )
        assert await store.purge(group) == 2
        assert await store.list(group) == []
