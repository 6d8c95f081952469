"""Rate limits on `POST /orders`: a fixed-window counter per key.

Two keys per order, both of the client's address (what a client cannot choose freely, unlike
the `customer_id` in the body): the customer's orders from that address
(`ORDERBUS_RATE_LIMIT_PER_MINUTE`), so that rotating customer ids gains nothing and orders
placed in a victim's name from elsewhere cannot lock the victim out; and all orders from that
address (`ORDERBUS_RATE_LIMIT_PER_CLIENT_PER_MINUTE`), so that rotating customer ids cannot
flood the service. It protects the service from one noisy or hostile client; it does not
authenticate anyone. Behind a proxy every client has the proxy's address (no
`X-Forwarded-For` is believed): size the limits for it, or limit at the proxy.

Time is cut into windows of `window_s` seconds aligned to the epoch, so every replica agrees
where a window starts; each hit counts against the current window and is allowed while the
count is at most `limit`. On Redis the count lives at `ratelimit:orders:<key>:<window-start>`
and replicas share it; without Redis each process counts alone.

The limiter protects the order path, it must never take it down: when Redis does not answer,
or fails, the hit is allowed and a warning logged (without the URL, which may hold a password).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.order.settings import OrderSettings
from services.runtime.service import Runtime
from services.runtime.settings import ServiceSettings

log = logging.getLogger(__name__)

Clock = Callable[[], float]
"""Seconds since the epoch; tests pass their own to move between windows without sleeping."""

KEY_PREFIX = "ratelimit:orders:"
MAX_TRACKED_KEYS = 100_000
REDIS_TIMEOUT_S = 0.5
"""A Redis that does not answer delays an order by at most about this long, then it passes."""
REDIS_BACKENDS = ("redis-pubsub", "redis-streams")


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    window_s: int
    retry_after_s: int
    """Whole seconds until the current window ends, at least 1: the `Retry-After` value."""


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int | None = None) -> Verdict:
        """Count one request for `key` in the current window and say whether it may go on:
        whether the count is at most `limit` (the limiter's own when None)."""
        ...

    async def hits(self, keys: Sequence[tuple[str, int]]) -> list[Verdict]:
        """`hit` for each `(key, limit)`, at once (one round trip on Redis)."""
        ...

    async def close(self) -> None: ...


def window_start(now: float, window_s: int) -> int:
    return int(now // window_s) * window_s


def verdict(count: int, limit: int, window_s: int, now: float) -> Verdict:
    window_end = window_start(now, window_s) + window_s
    retry_after_s = max(1, math.ceil(window_end - now))
    return Verdict(count <= limit, limit, window_s, retry_after_s)


@dataclass
class _Window:
    start: int
    count: int = 0


class InProcessRateLimiter:
    """Counts in this process only: N replicas together allow up to N x `limit`."""

    def __init__(
        self,
        limit: int,
        window_s: int,
        *,
        max_keys: int = MAX_TRACKED_KEYS,
        clock: Clock = time.time,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        # Kept in the order their windows opened, so expired ones are always at the front.
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    @property
    def tracked(self) -> int:
        return len(self._windows)

    async def hit(self, key: str, limit: int | None = None) -> Verdict:
        now = self._clock()
        start = window_start(now, self.window_s)
        self._drop_expired(start)
        window = self._windows.get(key)
        if window is None or window.start != start:
            window = self._open(key, start)
        window.count += 1
        return verdict(window.count, limit or self.limit, self.window_s, now)

    async def hits(self, keys: Sequence[tuple[str, int]]) -> list[Verdict]:
        return [await self.hit(key, limit) for key, limit in keys]

    async def close(self) -> None:
        self._windows.clear()

    def _drop_expired(self, current_start: int) -> None:
        while self._windows:
            oldest = next(iter(self._windows.values()))
            if oldest.start >= current_start:
                return
            self._windows.popitem(last=False)

    def _open(self, key: str, start: int) -> _Window:
        self._windows.pop(key, None)
        if len(self._windows) >= self.max_keys:
            # Only live windows are left: forgetting the oldest lets that customer start over,
            # the price of a memory bound that a flood of distinct customers cannot break.
            self._windows.popitem(last=False)
        window = self._windows[key] = _Window(start)
        return window


class RedisRateLimiter:
    """Counts in Redis, so every replica sees the same count for a key and window."""

    def __init__(
        self,
        url: str,
        limit: int,
        window_s: int,
        *,
        prefix: str = KEY_PREFIX,
        clock: Clock = time.time,
        timeout_s: float = REDIS_TIMEOUT_S,
        client_name: str | None = None,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.prefix = prefix
        self._clock = clock
        # Imported here: a service on another broker never loads the Redis client.
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError

        self._errors: tuple[type[Exception], ...] = (RedisError, OSError)
        # No connection yet: redis-py connects on the first command. Made here so a malformed
        # URL stops the app at startup rather than failing each order.
        self._client = Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            # redis-py retries with backoff by default: seconds an order would wait.
            retry=Retry(NoBackoff(), 0),
            client_name=client_name,
        )
        self._failing = False

    def key(self, key: str, now: float) -> str:
        return f"{self.prefix}{key}:{window_start(now, self.window_s)}"

    async def hit(self, key: str, limit: int | None = None) -> Verdict:
        [found] = await self.hits([(key, limit or self.limit)])
        return found

    async def hits(self, keys: Sequence[tuple[str, int]]) -> list[Verdict]:
        now = self._clock()
        try:
            counts = await self._count([self.key(key, now) for key, _ in keys])
        except self._errors as error:
            self._unavailable(error)
            return [Verdict(True, limit, self.window_s, 1) for _, limit in keys]
        if self._failing:
            self._failing = False
            log.info("rate limit store answers again; orders are limited again")
        return [
            verdict(count, limit, self.window_s, now)
            for count, (_, limit) in zip(counts, keys, strict=True)
        ]

    async def close(self) -> None:
        await self._client.aclose()

    async def _count(self, names: Sequence[str]) -> list[int]:
        async with self._client.pipeline(transaction=True) as pipe:
            # MULTI/EXEC: one round trip, and no moment where a counter lives without an
            # expiry. NX sets the expiry only if there is none, i.e. only for the INCR that
            # created the key (Redis >= 7.0), so later hits do not push the expiry back.
            for name in names:
                pipe.incr(name)
                pipe.expire(name, self.window_s, nx=True)
            replies = await pipe.execute()
        return [int(count) for count in replies[::2]]

    def _unavailable(self, error: Exception) -> None:
        # Only the error's class, as redis-py's messages name the host; and once per outage,
        # not once per order.
        if not self._failing:
            self._failing = True
            log.warning(
                "rate limit store unavailable (%s); orders pass unchecked until it answers",
                type(error).__name__,
            )


def redis_url(settings: ServiceSettings, own: OrderSettings) -> str | None:
    """The Redis to count in: the one configured for it, else the bus's when it is Redis."""
    if own.rate_limit_redis_url is not None:
        return own.rate_limit_redis_url.get_secret_value()
    if settings.bus.backend in REDIS_BACKENDS:
        return settings.bus.resolved_url
    return None


def rate_limiter(
    settings: ServiceSettings, own: OrderSettings, *, clock: Clock = time.time
) -> RateLimiter | None:
    """The order rate limiter these settings ask for; None when limiting is off."""
    limit, window_s = own.rate_limit_per_minute, own.rate_limit_window_s
    if limit == 0 and own.rate_limit_per_client_per_minute == 0:
        return None
    url = redis_url(settings, own)
    if url is not None:
        # Named so `CLIENT LIST` tells which instance holds a connection.
        name = f"{settings.instance('order')}:ratelimit"
        return RedisRateLimiter(url, limit, window_s, clock=clock, client_name=name)
    return InProcessRateLimiter(limit, window_s, clock=clock)


@dataclass(frozen=True)
class Refusal:
    verdict: Verdict
    field: str
    """What the limit is on, for the 429's error: `customer_id`, or `client`."""


async def check(
    limiter: RateLimiter, own: OrderSettings, client: str, customer_id: str
) -> Refusal | None:
    """Count one order of `customer_id` from the address `client`; the refusal, if any."""
    per_customer, per_client = own.rate_limit_per_minute, own.rate_limit_per_client_per_minute
    if per_customer:
        found = await limiter.hit(f"{client}/{customer_id}", per_customer)
        if not found.allowed:
            return Refusal(found, "customer_id")
    if per_client:
        found = await limiter.hit(f"client:{client}", per_client)
        if not found.allowed:
            return Refusal(found, "client")
    return None


class OrderRateLimit:
    """The limiter of one order app: built with its routes, closed when the app stops."""

    def __init__(self, own: OrderSettings) -> None:
        self.own = own
        self.limiter: RateLimiter | None = None

    def build(self, settings: ServiceSettings) -> RateLimiter | None:
        self.limiter = rate_limiter(settings, self.own)
        return self.limiter

    async def close(self, runtime: Runtime) -> None:
        """The shutdown hook: closes the limiter's connection, if it has one."""
        if self.limiter is not None:
            await self.limiter.close()
