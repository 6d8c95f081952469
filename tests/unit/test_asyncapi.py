"""The AsyncAPI documents: generated from the code, committed, current, and what they say."""

from __future__ import annotations

import pytest

from bus.asyncapi import Channel, specification
from contracts import ORDER_CREATED, TOPICS, OrderCreated
from orderbus.asyncapi import DOCS, DOCUMENTED, document, render
from orderbus.specs import service_spec
from services.runtime.settings import SERVICES, SUBSCRIBERS


@pytest.mark.parametrize("backend", DOCUMENTED)
def test_committed_document_is_current(backend: str) -> None:
    committed = (DOCS / f"{backend}.json").read_text()
    assert committed == render(backend), "python -m orderbus.asyncapi, then commit them"


@pytest.mark.parametrize("backend", DOCUMENTED)
def test_document_has_every_subscriber_and_every_publisher(backend: str) -> None:
    doc = document(backend)
    assert doc["asyncapi"] == "3.0.0"
    receive = [op for op in doc["operations"].values() if op["action"] == "receive"]
    send = [op for op in doc["operations"].values() if op["action"] == "send"]
    descriptions = [
        doc["channels"][op["channel"]["$ref"].rsplit("/", 1)[-1]]["description"] for op in receive
    ]
    for group in SUBSCRIBERS:
        assert any(f"as group {group}" in text for text in descriptions), group
    assert len(send) == len(TOPICS), "each business event, published by one service"
    # The payload is the CloudEvent envelope whose data is the event's contract.
    schemas = doc["components"]["schemas"]
    event = schemas["OrderCreatedEvent"]
    assert event["properties"]["type"]["const"] == ORDER_CREATED
    assert event["properties"]["data"]["$ref"].endswith("/OrderCreated")
    assert set(OrderCreated.model_fields) == set(schemas["OrderCreated"]["properties"])
    assert "traceparent" in event["properties"]


def test_physical_names_follow_the_contract() -> None:
    rabbit = document("rabbitmq")
    queues = {
        channel["bindings"]["amqp"]["queue"]["name"]
        for channel in rabbit["channels"].values()
        if channel["bindings"]["amqp"]["is"] == "queue"
    }
    assert queues == {
        f"{subscription.topic}.{name}"
        for name in SERVICES
        for subscription in service_spec(name).subscriptions
    }
    assert f"{ORDER_CREATED}.billing" in queues
    streams = document("redis-streams")
    groups = {
        channel["bindings"]["redis"].get("groupName") for channel in streams["channels"].values()
    }
    assert set(SERVICES) <= groups


def test_no_password_in_a_document() -> None:
    assert "guest" not in render("rabbitmq")


def test_memory_has_no_wire_protocol_to_document() -> None:
    with pytest.raises(ValueError, match="no wire protocol"):
        specification(
            "memory",
            subscriptions=[(Channel(ORDER_CREATED, OrderCreated), "billing")],
            publications=[],
            title="t",
            version="1",
            description="d",
        )
