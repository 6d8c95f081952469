"""Redis pub/sub: fire and forget, every subscriber gets every message while connected."""

from bus.descriptor import Backend
from bus.port import Capabilities

BACKEND = Backend(
    name="redis-pubsub",
    default_url="redis://127.0.0.1:6379/0",
    schemes=("redis", "rediss", "unix"),
    capabilities=Capabilities(
        fan_out=True,
        competing_consumers=False,
        offline_catch_up=False,
        redelivery=False,
        per_key_ordering=False,
        ordering="per channel",
    ),
    bus="bus.backends.redis_pubsub.bus:RedisPubSubBus",
    admin="bus.backends.redis_pubsub.admin:ADMIN",
    metrics="faststream.redis.prometheus:RedisPrometheusMiddleware",
)
