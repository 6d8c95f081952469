"""The in-process order rate limiter, and which limiter the settings choose; no network."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bus import BusSettings
from services.order.ratelimit import (
    InProcessRateLimiter,
    RedisRateLimiter,
    Verdict,
    rate_limiter,
    window_start,
)
from services.order.settings import OrderSettings
from services.runtime.settings import ServiceSettings


class Clock:
    """Time that moves only when a test says so."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


WINDOW_START = 1_700_000_040.0  # a multiple of 60: the start of a one-minute window


async def hits(limiter: InProcessRateLimiter, key: str, n: int) -> list[Verdict]:
    return [await limiter.hit(key) for _ in range(n)]


async def test_the_limit_is_allowed_then_refused_until_the_window_ends() -> None:
    clock = Clock(WINDOW_START + 15.2)
    limiter = InProcessRateLimiter(3, 60, clock=clock)

    verdicts = await hits(limiter, "alice", 4)

    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[-1] == Verdict(allowed=False, limit=3, window_s=60, retry_after_s=45)


async def test_retry_after_is_at_least_one_second() -> None:
    clock = Clock(WINDOW_START + 59.9)
    limiter = InProcessRateLimiter(1, 60, clock=clock)

    refused = (await hits(limiter, "alice", 2))[-1]

    assert not refused.allowed
    assert refused.retry_after_s == 1


async def test_the_next_window_starts_from_zero() -> None:
    clock = Clock(WINDOW_START + 30)
    limiter = InProcessRateLimiter(2, 60, clock=clock)
    assert [v.allowed for v in await hits(limiter, "alice", 3)] == [True, True, False]

    clock.now = WINDOW_START + 60  # the first instant of the next window

    assert [v.allowed for v in await hits(limiter, "alice", 3)] == [True, True, False]


async def test_customers_are_counted_apart() -> None:
    limiter = InProcessRateLimiter(1, 60, clock=Clock(WINDOW_START))

    assert (await limiter.hit("alice")).allowed
    assert not (await limiter.hit("alice")).allowed
    assert (await limiter.hit("bob")).allowed


async def test_expired_windows_are_dropped() -> None:
    clock = Clock(WINDOW_START)
    limiter = InProcessRateLimiter(5, 60, clock=clock)
    for n in range(100):
        await limiter.hit(f"customer-{n}")

    clock.now += 60
    await limiter.hit("latecomer")

    assert limiter.tracked == 1


async def test_memory_is_bounded_by_forgetting_the_oldest_live_window() -> None:
    clock = Clock(WINDOW_START)
    limiter = InProcessRateLimiter(1, 60, max_keys=10, clock=clock)
    await limiter.hit("first")
    for n in range(50):
        await limiter.hit(f"customer-{n}")

    assert limiter.tracked == 10
    # "first" was forgotten to make room, so it may order again; the newest are still counted.
    assert (await limiter.hit("first")).allowed
    assert not (await limiter.hit("customer-49")).allowed


async def test_the_oldest_window_is_evicted_not_the_customer_seen_first() -> None:
    clock = Clock(WINDOW_START)
    limiter = InProcessRateLimiter(1, 60, max_keys=3, clock=clock)
    await limiter.hit("alice")
    clock.now += 60
    for name in ("bob", "carol", "alice"):
        await limiter.hit(name)

    await limiter.hit("dave")  # full: the oldest window (bob's) goes

    assert not (await limiter.hit("alice")).allowed
    assert (await limiter.hit("bob")).allowed


def test_windows_are_aligned_to_the_epoch() -> None:
    assert window_start(WINDOW_START + 59.99, 60) == WINDOW_START
    assert window_start(WINDOW_START + 60, 60) == WINDOW_START + 60
    assert window_start(7.5, 1) == 7


def on_memory() -> ServiceSettings:
    return ServiceSettings(bus=BusSettings(backend="memory"))


def own(**update: object) -> OrderSettings:
    return OrderSettings().model_copy(update=update)


def test_settings_default_to_600_a_minute_in_process() -> None:
    limiter = rate_limiter(on_memory(), OrderSettings())
    assert isinstance(limiter, InProcessRateLimiter)
    assert (limiter.limit, limiter.window_s) == (600, 60)


def test_the_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERBUS_RATE_LIMIT_PER_MINUTE", "5")
    monkeypatch.setenv("ORDERBUS_RATE_LIMIT_WINDOW_S", "10")
    monkeypatch.setenv("ORDERBUS_RATE_LIMIT_REDIS_URL", "redis://:pw@cache:6379/2")
    found = OrderSettings()
    assert (found.rate_limit_per_minute, found.rate_limit_window_s) == (5, 10)
    assert found.rate_limit_redis_url is not None
    assert found.rate_limit_redis_url.get_secret_value() == "redis://:pw@cache:6379/2"
    assert "pw" not in repr(found)


def test_zero_turns_limiting_off() -> None:
    off = own(rate_limit_per_minute=0, rate_limit_per_client_per_minute=0)
    assert rate_limiter(on_memory(), off) is None
    client_only = own(rate_limit_per_minute=0)
    assert rate_limiter(on_memory(), client_only) is not None, "the client limit stays"


@pytest.mark.parametrize("backend", ["redis-pubsub", "redis-streams"])
def test_a_redis_bus_lends_its_redis(backend: str) -> None:
    chosen = ServiceSettings(bus=BusSettings(backend=backend, url="redis://bus:6379/1"))
    assert isinstance(rate_limiter(chosen, OrderSettings()), RedisRateLimiter)


@pytest.mark.parametrize("backend", ["memory", "rabbitmq", "kafka", "nats"])
def test_other_buses_count_in_process(backend: str) -> None:
    chosen = ServiceSettings(bus=BusSettings(backend=backend))
    assert isinstance(rate_limiter(chosen, OrderSettings()), InProcessRateLimiter)


def test_a_configured_redis_wins_on_any_bus() -> None:
    kafka = ServiceSettings(bus=BusSettings(backend="kafka"))
    chosen = OrderSettings(rate_limit_redis_url="redis://cache:6379/0")
    assert isinstance(rate_limiter(kafka, chosen), RedisRateLimiter)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rate_limit_per_minute", -1),
        ("rate_limit_per_minute", 1_000_001),
        ("rate_limit_window_s", 0),
        ("rate_limit_window_s", 3_601),
    ],
)
def test_out_of_bounds_settings_are_refused(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        OrderSettings.model_validate({field: value})


def test_a_bad_redis_url_is_refused_without_leaking_it() -> None:
    with pytest.raises(ValidationError) as caught:
        OrderSettings(rate_limit_redis_url="http://admin:s3cr3t@cache:6379/0")
    message = str(caught.value)
    assert "ORDERBUS_RATE_LIMIT_REDIS_URL must start redis://" in message
    assert "s3cr3t" not in message
    assert "cache" not in message
