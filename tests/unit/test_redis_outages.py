"""The Redis loops' outages: told once as they begin and once as they end, whatever the number
of tries between, and a pause between tries that ends at close."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bus.backends._redis.outage import Outages


def test_an_outage_is_told_once_as_it_begins_and_once_as_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outages = Outages("redis-streams", retry_s=1)
    caplog.set_level(logging.INFO, "bus")
    outages.end("orders/billing", "reading")  # no outage: nothing to tell
    for _ in range(3):
        outages.begin("orders/billing", "cannot read", ConnectionError("refused"))
    assert outages.ongoing("orders/billing")
    assert not outages.ongoing("orders/inventory")
    outages.end("orders/billing", "reading")
    outages.end("orders/billing", "reading")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "redis-streams: cannot read orders/billing (ConnectionError); trying again every 1s",
        ),
        ("INFO", "redis-streams: reading orders/billing again"),
    ]


async def test_a_pause_between_tries_ends_when_the_loops_are_stopped() -> None:
    outages = Outages("redis-pubsub", retry_s=60)
    pausing = asyncio.create_task(outages.wait())
    await asyncio.sleep(0)  # the pause has begun
    assert not pausing.done()
    outages.stop()
    await asyncio.wait_for(pausing, 1)
    await asyncio.wait_for(outages.wait(), 1)  # and every pause after it
    outages.start()
    again = asyncio.create_task(outages.wait())
    await asyncio.sleep(0)
    assert not again.done()  # started again: a pause lasts its time
    outages.stop()
    await asyncio.wait_for(again, 1)


async def test_a_pause_lasts_its_time_when_nothing_stops_it() -> None:
    outages = Outages("redis-pubsub", retry_s=60)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await outages.wait(0.05)
    assert loop.time() - began >= 0.05
