"""NATS JetStream: a stream per topic, a durable pull consumer per group."""

from bus import names
from bus.descriptor import Backend
from bus.port import Capabilities

BACKEND = Backend(
    name="nats",
    default_url="nats://127.0.0.1:4222",
    schemes=("nats", "tls"),
    capabilities=Capabilities(
        fan_out=True,
        competing_consumers=True,
        offline_catch_up=True,
        redelivery=True,
        per_key_ordering=False,
        ordering="per stream, with one consumer",
    ),
    bus="bus.backends.nats.bus:NatsBus",
    admin="bus.backends.nats.admin:ADMIN",
    metrics="faststream.nats.prometheus:NatsPrometheusMiddleware",
)


def dead_letter_stream(group: str) -> str:
    """Stream names may not contain dots: `dlq.billing` is kept in stream `dlq_billing`."""
    return names.dead_letters(group).replace(".", "_")
