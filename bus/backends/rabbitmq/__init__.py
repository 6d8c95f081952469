"""RabbitMQ: a fanout exchange per topic, a quorum queue per group."""

from bus.descriptor import Backend
from bus.port import Capabilities

BACKEND = Backend(
    name="rabbitmq",
    default_url="amqp://guest:guest@127.0.0.1:5672/",
    schemes=("amqp", "amqps"),
    capabilities=Capabilities(
        fan_out=True,
        competing_consumers=True,
        offline_catch_up=True,
        redelivery=True,
        per_key_ordering=False,
        ordering="per queue, with one consumer",
    ),
    bus="bus.backends.rabbitmq.bus:RabbitMQBus",
    admin="bus.backends.rabbitmq.admin:ADMIN",
    metrics="faststream.rabbit.prometheus:RabbitPrometheusMiddleware",
)
