"""Concurrent publishes on Redis share round trips, in order, past the connection pool."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as redis

from tests.integration.conftest import BusFactory, Names, make_event


@pytest.mark.parametrize("backend", ["redis-streams"])
async def test_many_concurrent_publishes_all_land_in_the_order_they_were_made(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    """600 publishes in flight at once: more than redis-py's pool of 100 connections, which
    one command per publish used to exhaust (MaxConnectionsError). They go out as pipelines,
    each caller returning once its entry is in the stream, in the order they were called."""
    topic = names.topic()
    bus = await make_bus()
    events = [make_event(topic, n) for n in range(600)]
    await asyncio.gather(*(bus.publish(topic, event) for event in events))

    client = redis.from_url(backend_url)
    try:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(topic)  # type: ignore[assignment]
    finally:
        await client.aclose()
    ids = [json.loads(fields[b"__data__"])["id"] for _, fields in entries]
    assert ids == [str(e.id) for e in events]


@pytest.mark.parametrize("backend", ["redis-streams"])
async def test_a_failed_pipeline_fails_each_of_its_publishes(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    """A publish waiting in a pipeline learns that the broker refused it: here the key is a
    string, not a stream, so each XADD is refused (WRONGTYPE) and each caller raises."""
    topic = names.topic()
    client = redis.from_url(backend_url)
    try:
        await client.set(topic, "not a stream")
        bus = await make_bus()
        outcomes = await asyncio.gather(
            *(bus.publish(topic, make_event(topic, n)) for n in range(20)),
            return_exceptions=True,
        )
    finally:
        await client.delete(topic)
        await client.aclose()
    assert all(isinstance(o, redis.ResponseError) for o in outcomes), outcomes
