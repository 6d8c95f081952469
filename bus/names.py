"""Physical names on the brokers, derived by one set of rules (a public contract).

The topic is the event type (`order_created`): Redis channel and stream key, RabbitMQ exchange,
Kafka topic, NATS subject and stream. A group is a service name; a consumer is an instance id.
"""

from __future__ import annotations

import re

_TOPIC = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# No dots: NATS durable consumer names may not contain them.
_GROUP = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_CONSUMER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _check(kind: str, value: str, pattern: re.Pattern[str], rule: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"invalid {kind} name {value!r}: {rule}")
    return value


def check_topic(topic: str) -> str:
    return _check("topic", topic, _TOPIC, "snake_case, 1-64 characters, starting with a letter")


def check_group(group: str) -> str:
    return _check("group", group, _GROUP, "lower case letters, digits, '_' or '-', no dots")


def check_consumer(consumer: str) -> str:
    return _check("consumer", consumer, _CONSUMER, "letters, digits, '_' or '-', 1-64 characters")


def group_queue(topic: str, group: str) -> str:
    """The RabbitMQ queue a group consumes a topic from: `order_created.billing`."""
    return f"{topic}.{group}"


def dead_letters(group: str) -> str:
    """Where a group's dead letters go, in the backend's own kind of destination."""
    return f"dlq.{group}"


def instance_group(instance: str, topic: str) -> str:
    """A group of one instance's own for one topic, for events every instance must receive
    (fan-out to every instance, not competition): `notification-1-instance_activity`.

    One topic per group: a Kafka group whose members subscribe to different topics keeps
    rebalancing on some brokers (Tansu), and nothing is gained by sharing. Subscribe under it
    with `ephemeral=True`, so that the broker does not keep a group per retired instance
    (unless `INSTANCE_ID` is set, every new container or pod has an id of its own).
    """
    check_consumer(instance)
    check_topic(topic)
    return check_group(f"{instance.lower()}-{topic}"[:64])
