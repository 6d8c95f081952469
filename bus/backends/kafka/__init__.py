"""Kafka: a topic per event type, partitions by the order id, a consumer group per service."""

from urllib.parse import urlsplit

from bus.descriptor import Backend
from bus.port import Capabilities

BACKEND = Backend(
    name="kafka",
    default_url="kafka://127.0.0.1:9092",
    schemes=("kafka",),
    capabilities=Capabilities(
        fan_out=True,
        competing_consumers=True,
        offline_catch_up=True,
        redelivery=True,
        per_key_ordering=True,
        ordering="per key (the order id)",
    ),
    bus="bus.backends.kafka.bus:KafkaBus",
    admin="bus.backends.kafka.admin:ADMIN",
    metrics="faststream.kafka.prometheus:KafkaPrometheusMiddleware",
    refused=(
        (
            "kafkas",
            "TLS to Kafka is not set up by this bus (it would connect in plaintext); "
            "use kafka:// on a network you trust",
        ),
    ),
    credentials=False,
    many_hosts=True,
)


def bootstrap_servers(url: str) -> list[str]:
    """`kafka://a:9092,b:9092` -> `["a:9092", "b:9092"]`, for every client of this backend."""
    return urlsplit(url).netloc.split(",")
