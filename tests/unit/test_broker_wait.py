"""A service waits, bounded, for a broker that does not listen yet (bus.broker_wait)."""

from __future__ import annotations

import asyncio

import pytest

from bus import BusSettings
from bus.broker_wait import addresses, wait_for_broker
from tests.brokers import free_port


def test_addresses_are_every_host_of_the_url_with_the_backends_default_port() -> None:
    kafka = BusSettings(backend="kafka", url="kafka://k1:9093,k2")
    assert addresses(kafka) == [("k1", 9093), ("k2", 9092)]
    redis = BusSettings(backend="redis-streams", url="redis://order:secret@redis/0")
    assert addresses(redis) == [("redis", 6379)]
    assert addresses(BusSettings(backend="memory")) == []
    tls = BusSettings(backend="rabbitmq", url="amqps://order:secret@rabbit/")
    assert addresses(tls) == [("rabbit", 5671)]  # AMQP over TLS listens elsewhere


async def test_the_wait_ends_once_the_broker_listens() -> None:
    port = free_port()
    settings = BusSettings(backend="nats", url=f"nats://127.0.0.1:{port}", start_wait_s=30)
    waiting = asyncio.create_task(wait_for_broker(settings))
    await asyncio.sleep(0.3)  # a few refused attempts: nothing listens yet
    assert not waiting.done()
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", port)
    try:
        await asyncio.wait_for(waiting, timeout=10)
    finally:
        server.close()
        await server.wait_closed()


async def test_the_wait_is_bounded_and_its_error_shows_no_password() -> None:
    settings = BusSettings(
        backend="redis-streams",
        url=f"redis://order:s3cr3t@127.0.0.1:{free_port()}/0",
        start_wait_s=0.3,
    )
    with pytest.raises(ConnectionError, match="BUS_START_WAIT_S") as raised:
        await asyncio.wait_for(wait_for_broker(settings), timeout=10)
    assert "s3cr3t" not in str(raised.value)
    assert "redis-streams" in str(raised.value)
