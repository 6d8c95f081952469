"""The Redis order rate limiter on a real Redis: INCR and EXPIRE, shared by replicas."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from bus import BusSettings
from orderbus.specs import create_app
from services.order.ratelimit import KEY_PREFIX, RedisRateLimiter
from services.order.settings import OrderSettings
from services.runtime.settings import ServiceSettings
from tests.api.conftest import pin_rate_limit_clock
from tests.brokers import Kind
from tests.polling import eventually
from tests.unit.test_ratelimit import WINDOW_START, Clock


@pytest.fixture
def redis_url(broker_url: Callable[[Kind], str]) -> str:
    return broker_url("redis")


@pytest.fixture
async def inspect(redis_url: str) -> AsyncIterator[redis.Redis]:
    """A plain client to look at what the limiter left in Redis."""
    client = redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(inspect: redis.Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards (they expire anyway)."""
    own = f"ratelimit-test-{uuid.uuid4().hex[:10]}:"
    yield own
    await delete_matching(inspect, f"{own}*")


async def delete_matching(client: redis.Redis, pattern: str) -> None:
    keys = [key async for key in client.scan_iter(match=pattern)]
    if keys:
        await client.delete(*keys)


async def test_each_hit_is_an_incr_and_the_first_sets_the_expiry(
    redis_url: str, prefix: str, inspect: redis.Redis
) -> None:
    clock = Clock(WINDOW_START + 15.2)
    limiter = RedisRateLimiter(redis_url, 2, 60, prefix=prefix, clock=clock)
    key = limiter.key("alice", clock())
    assert key == f"{prefix}alice:{int(WINDOW_START)}"
    try:
        first = await limiter.hit("alice")
        assert first.allowed
        assert await inspect.get(key) == b"1"
        assert 0 < await inspect.ttl(key) <= 60

        # Later hits must not push the expiry back: shorten it and see that it stays short.
        await inspect.expire(key, 5)
        verdicts = [await limiter.hit("alice") for _ in range(2)]
    finally:
        await limiter.close()

    assert [v.allowed for v in verdicts] == [True, False]
    assert verdicts[-1].retry_after_s == 45
    assert await inspect.get(key) == b"3"
    assert 0 < await inspect.ttl(key) <= 5


async def test_replicas_share_one_count(redis_url: str, prefix: str) -> None:
    clock = Clock(WINDOW_START + 30)
    replicas = [RedisRateLimiter(redis_url, 3, 60, prefix=prefix, clock=clock) for _ in range(2)]
    try:
        allowed = [(await replicas[n % 2].hit("alice")).allowed for n in range(4)]
        other = await replicas[1].hit("bob")
        clock.now = WINDOW_START + 60
        next_window = await replicas[0].hit("alice")
    finally:
        for replica in replicas:
            await replica.close()

    assert allowed == [True, True, True, False]
    assert other.allowed
    assert next_window.allowed


async def test_the_order_service_counts_in_redis_and_closes_its_client(
    redis_url: str, inspect: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin_rate_limit_clock(monkeypatch, Clock(WINDOW_START + 15.2))
    instance = f"order-{uuid.uuid4().hex[:8]}"
    customer = f"c-{uuid.uuid4().hex[:12]}"
    settings = ServiceSettings(
        data_dir=tmp_path,
        instance_id=instance,
        bus=BusSettings(backend="memory", url=f"memory://{uuid.uuid4().hex[:8]}"),
    )
    own = OrderSettings(rate_limit_per_minute=1, rate_limit_redis_url=redis_url)
    key = f"{KEY_PREFIX}127.0.0.1/{customer}:{int(WINDOW_START)}"  # httpx ASGI: 127.0.0.1
    order = {"customer_id": customer, "items": [{"sku": "KB-001", "quantity": 1}]}
    app = create_app("order", settings, own=own)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://order") as client:
                codes = [(await client.post("/orders", json=order)).status_code for _ in range(2)]
                assert await client_names(inspect, instance)  # connected while running

        assert codes == [202, 429]
        assert await inspect.get(key) == b"2"
        assert 0 < await inspect.ttl(key) <= 60
        await eventually(lambda: gone(inspect, instance))  # and closed at shutdown
    finally:
        await inspect.delete(key)


async def client_names(client: redis.Redis, instance: str) -> list[str]:
    names = [str(c.get("name", "")) for c in await client.client_list()]
    return [name for name in names if name.startswith(instance)]


async def gone(client: redis.Redis, instance: str) -> bool | None:
    return True if not await client_names(client, instance) else None
