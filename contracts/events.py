"""Every business event of an order's life: its topic, data model and schema version, in one
table (the live-view events of `contracts.live` are not about one order and are kept there).

The event type is the topic (`bus.names`). Services wrap their payloads with `wrap()`, so every
event gets the same `dataschema` and `subject` (the order id, which is also the Kafka key);
`contracts.export` writes one JSON Schema file per entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.base import OrderEventData
from contracts.envelope import CloudEvent
from contracts.inventory_outcome import (
    INVENTORY_REJECTED,
    INVENTORY_RESERVED,
    InventoryRejected,
    InventoryReserved,
)
from contracts.invoice import INVOICE_ISSUED, INVOICE_VOIDED, InvoiceIssued, InvoiceVoided
from contracts.order_created import ORDER_CREATED, OrderCreated
from contracts.order_outcome import ORDER_CONFIRMED, ORDER_REJECTED, OrderConfirmed, OrderRejected


@dataclass(frozen=True)
class EventContract:
    event_type: str
    model: type[OrderEventData]
    publisher: str
    """The one service that publishes it: its events carry `source` `/services/<publisher>`,
    and consumers believe no other (`admission_error`)."""
    about: str
    """When it is published: for the AsyncAPI document."""
    version: int = 1

    @property
    def source(self) -> str:
        return f"/services/{self.publisher}"

    @property
    def dataschema(self) -> str:
        return f"urn:orderbus:schema:{self.event_type}:{self.version}"

    @property
    def schema_file(self) -> str:
        return f"{self.event_type}.v{self.version}.json"


EVENTS: dict[str, EventContract] = {
    contract.event_type: contract
    for contract in (
        EventContract(
            ORDER_CREATED,
            OrderCreated,
            "order",
            "An order was accepted: the order service's outbox relay.",
        ),
        EventContract(
            INVENTORY_RESERVED,
            InventoryReserved,
            "inventory",
            "Inventory holds stock for every line.",
        ),
        EventContract(
            INVENTORY_REJECTED,
            InventoryRejected,
            "inventory",
            "Inventory is short: nothing is held.",
        ),
        EventContract(
            INVOICE_ISSUED, InvoiceIssued, "billing", "Billing issued the order's invoice."
        ),
        EventContract(
            INVOICE_VOIDED,
            InvoiceVoided,
            "billing",
            "Billing voided the invoice of a rejected order.",
        ),
        EventContract(
            ORDER_CONFIRMED,
            OrderConfirmed,
            "order",
            "Stock reserved and invoice issued: the order stands.",
        ),
        EventContract(
            ORDER_REJECTED,
            OrderRejected,
            "order",
            "The order will not be fulfilled: billing voids, inventory releases.",
        ),
    )
}

TOPICS: tuple[str, ...] = tuple(EVENTS)
"""Every business topic: what a clean-up or a native tool needs to know."""


def wrap(event_type: str, payload: OrderEventData, *, correlationid: str | None) -> CloudEvent:
    """`payload` as a CloudEvent of `event_type`, about its order, with its schema version,
    from its publisher (`source`)."""
    contract = EVENTS[event_type]
    if not isinstance(payload, contract.model):
        raise TypeError(f"{event_type} carries {contract.model.__name__}, not {type(payload)}")
    return CloudEvent.of(
        payload,
        type=event_type,
        source=contract.source,
        subject=str(payload.order_id),
        dataschema=contract.dataschema,
        correlationid=correlationid,
    )


def published_by(service: str) -> list[str]:
    """The business topics `service` publishes, from the table."""
    return [topic for topic, contract in EVENTS.items() if contract.publisher == service]


def admission_error(topic: str, event: CloudEvent) -> str | None:
    """Why `event`, received on the business topic `topic`, is not to be believed, naming the
    field; None if it is. Anything that can write to the broker can send an event: one that
    claims another topic's type, or comes from a service that does not publish this topic,
    would confirm orders or reserve stock on nobody's word."""
    contract = EVENTS[topic]
    if event.type != contract.event_type:
        return f"type: {event.type!r} arrived on topic {topic!r}, which carries only {topic!r}"
    if event.source != contract.source:
        return (
            f"source: {event.source!r} does not publish {topic!r} (only {contract.source!r} does)"
        )
    order_id = event.data.get("order_id") if isinstance(event.data, dict) else None
    if event.subject is None or event.subject != order_id:
        # The inboxes and logs key events by subject: it must be the order the data is about.
        return f"subject: {str(event.subject)[:64]!r} is not the order the data is about"
    return None
