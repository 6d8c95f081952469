"""The envelope and event contracts: their shape, their limits, and their exported schemas."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from bus import names
from bus.codec import PoisonMessage, decode, encode
from contracts import (
    EVENTS,
    INVENTORY_REJECTED,
    ORDER_CREATED,
    TOPICS,
    CloudEvent,
    InventoryRejected,
    InvoiceVoided,
    OrderCreated,
    OrderItem,
    wrap,
)
from contracts.export import SCHEMA_DIR, SCHEMAS, render


def order(**overrides: object) -> OrderCreated:
    fields: dict[str, object] = {
        "order_id": uuid.uuid4(),
        "customer_id": "cust-1",
        "items": [OrderItem(sku="SKU-1", quantity=2, unit_price=Decimal("9.99"))],
        "total": Decimal("19.98"),
        "currency": "EUR",
        "created_at": datetime.now(UTC),
    } | overrides
    return OrderCreated.model_validate(fields)


@pytest.mark.parametrize("filename", list(SCHEMAS))
def test_exported_schemas_are_in_sync(filename: str) -> None:
    on_disk = (SCHEMA_DIR / filename).read_text()
    assert on_disk == render(SCHEMAS[filename]), "run: python -m contracts.export"


def test_cloudevent_round_trips_with_every_attribute() -> None:
    event = CloudEvent.of(
        order(),
        type=ORDER_CREATED,
        source="/services/order",
        subject="o-1",
        dataschema="urn:orderbus:schema:order_created:1",
        correlationid="c-1",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    assert CloudEvent.from_json(event.to_json()) == event
    assert event.specversion == "1.0"
    assert event.datacontenttype == "application/json"
    assert OrderCreated.model_validate(event.data).total == Decimal("19.98")


def test_unknown_extension_attributes_survive_a_relay() -> None:
    raw = b'{"specversion":"1.0","id":"6f1c7f5e-7a52-4f7e-9a53-0ad1a1d0b0c1","source":"/x",'
    raw += b'"type":"order_created","time":"2026-01-01T00:00:00Z","data":{},"tenant":"acme"}'
    event = CloudEvent.from_json(raw)
    assert CloudEvent.from_json(event.to_json()).model_extra == {"tenant": "acme"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("specversion", "0.3"),
        ("type", "OrderCreated"),
        ("time", "2026-01-01T00:00:00"),  # no time zone
        ("traceparent", "not-a-traceparent"),
        ("source", ""),
    ],
)
def test_envelope_rejects_bad_attributes(field: str, value: str) -> None:
    fields = {"source": "/x", "type": "order_created", "data": {}, field: value}
    with pytest.raises(ValidationError, match=field):
        CloudEvent.model_validate(fields)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"items": []}, "items"),
        ({"items": [OrderItem(sku="A1", quantity=1, unit_price=Decimal(1))] * 101}, "items"),
        ({"currency": "euro"}, "currency"),
        ({"customer_id": "has space"}, "customer_id"),
        ({"total": Decimal("-1")}, "total"),
    ],
)
def test_order_created_rejects_bad_data(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        order(**overrides)


@pytest.mark.parametrize("quantity", [0, -1, 1001])
def test_item_quantity_is_bounded(quantity: int) -> None:
    with pytest.raises(ValidationError, match="quantity"):
        OrderItem(sku="SKU-1", quantity=quantity, unit_price=Decimal(1))


def test_codec_refuses_to_publish_an_oversized_event() -> None:
    event = CloudEvent(source="/x", type="order_created", data={"blob": "x" * 5_000})
    with pytest.raises(ValueError, match=r"limit is 2048 \(BUS_MAX_EVENT_BYTES\)"):
        encode(event, max_bytes=2_048)


def test_codec_names_what_is_wrong_with_a_poison_message_but_not_its_content() -> None:
    with pytest.raises(PoisonMessage, match="type: Field required") as caught:
        decode(b'{"specversion":"1.0","source":"/x","data":{"card":"4111111111111111"}}', 10_000)
    assert "4111" not in str(caught.value)
    with pytest.raises(PoisonMessage, match="not a valid CloudEvent"):
        decode(b"\xff not json", 10_000)
    with pytest.raises(PoisonMessage, match="exceeds the limit"):
        decode(b"x" * 2_000, 1_024)


def test_every_event_type_is_a_valid_topic_with_a_versioned_schema() -> None:
    assert set(TOPICS) == {
        "order_created",
        "inventory_reserved",
        "inventory_rejected",
        "invoice_issued",
        "invoice_voided",
        "order_confirmed",
        "order_rejected",
    }
    for event_type, contract in EVENTS.items():
        assert names.check_topic(event_type) == event_type
        assert contract.dataschema == f"urn:orderbus:schema:{event_type}:1"
        assert contract.schema_file in SCHEMAS


def test_wrap_makes_the_order_the_subject_and_names_the_schema() -> None:
    rejected = InventoryRejected(
        order_id=uuid.uuid4(), reason="insufficient stock", rejected_at=datetime.now(UTC)
    )
    event = wrap(INVENTORY_REJECTED, rejected, correlationid="c-1")
    assert event.type == "inventory_rejected"
    assert event.subject == str(rejected.order_id)
    assert event.dataschema == "urn:orderbus:schema:inventory_rejected:1"
    assert event.correlationid == "c-1"
    assert InventoryRejected.model_validate(event.data) == rejected
    with pytest.raises(TypeError, match="inventory_rejected carries InventoryRejected"):
        wrap(INVENTORY_REJECTED, order(), correlationid=None)


@pytest.mark.parametrize("reason", ["", "x" * 201])
def test_a_reason_is_said_in_1_to_200_characters(reason: str) -> None:
    with pytest.raises(ValidationError, match="reason"):
        InvoiceVoided(
            order_id=uuid.uuid4(),
            invoice_id=uuid.uuid4(),
            reason=reason,
            voided_at=datetime.now(UTC),
        )
