"""Redis Streams: consumer groups, pending entries, reclaiming what a dead consumer held."""

from bus.descriptor import Backend
from bus.port import Capabilities

BACKEND = Backend(
    name="redis-streams",
    default_url="redis://127.0.0.1:6379/0",
    schemes=("redis", "rediss", "unix"),
    capabilities=Capabilities(
        fan_out=True,
        competing_consumers=True,
        offline_catch_up=True,
        redelivery=True,
        per_key_ordering=False,
        ordering="per stream, with one consumer",
    ),
    bus="bus.backends.redis_streams.bus:RedisStreamsBus",
    admin="bus.backends.redis_streams.admin:ADMIN",
    metrics="faststream.redis.prometheus:RedisPrometheusMiddleware",
)
