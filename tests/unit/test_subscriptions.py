"""Typed subscriptions: a subscription names its topic's model, the chassis validates each
event's data into it once, and the notification service's notices are a pure function of it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from bus.codec import PoisonMessage
from bus.port import Received
from contracts import (
    ORDER_CREATED,
    ORDER_REJECTED,
    CloudEvent,
    OrderConfirmed,
    OrderCreated,
    OrderItem,
    OrderRejected,
    wrap,
)
from services.notification.handlers import notice_of
from services.runtime.handling import admitted
from services.runtime.service import Subscription


async def _ignore(conn: Any, data: Any, received: Received) -> None:
    return None


def _created() -> OrderCreated:
    return OrderCreated(
        order_id=uuid.uuid4(),
        customer_id="c-1",
        items=[OrderItem(sku="SKU-1", quantity=2, unit_price=Decimal("1.50"))],
        total=Decimal("3.00"),
        currency="EUR",
        created_at=datetime.now(UTC),
    )


def test_a_subscription_must_name_the_model_its_topic_carries() -> None:
    with pytest.raises(TypeError, match="order_rejected carries OrderRejected"):
        Subscription(ORDER_REJECTED, OrderCreated, _ignore)


async def _ignore_batch(conn: Any, batch: Any) -> None:
    return None


def test_a_subscription_has_one_handler_per_event_or_per_batch() -> None:
    with pytest.raises(TypeError, match="one of the two"):
        Subscription(ORDER_CREATED, OrderCreated)
    with pytest.raises(TypeError, match="one of the two"):
        Subscription(ORDER_CREATED, OrderCreated, _ignore, batched=_ignore_batch)
    assert Subscription(ORDER_CREATED, OrderCreated, batched=_ignore_batch).handler is None


def test_the_handler_gets_the_data_as_its_model() -> None:
    order = _created()
    event = wrap(ORDER_CREATED, order, correlationid=None)
    data = admitted(Subscription(ORDER_CREATED, OrderCreated, _ignore), event)
    assert isinstance(data, OrderCreated)
    assert data == order


def test_data_that_does_not_fit_its_model_is_poison_naming_the_field() -> None:
    event = wrap(ORDER_CREATED, _created(), correlationid=None)
    broken = CloudEvent.model_validate(
        event.model_dump() | {"data": event.data | {"items": "not-a-list"}}
    )
    with pytest.raises(PoisonMessage, match=r"^data: items: "):
        admitted(Subscription(ORDER_CREATED, OrderCreated, _ignore), broken)


def test_an_event_of_another_type_is_not_believed() -> None:
    event = wrap(ORDER_CREATED, _created(), correlationid=None)
    with pytest.raises(PoisonMessage, match=r"^not believed: type: "):
        admitted(Subscription(ORDER_REJECTED, OrderRejected, _ignore), event)


def test_each_decision_gets_its_notice() -> None:
    order = _created()
    common: dict[str, Any] = {
        "order_id": order.order_id,
        "customer_id": "c-1",
        "total": Decimal("3.00"),
        "currency": "EUR",
    }
    received = notice_of(order)
    confirmed = notice_of(OrderConfirmed(**common, confirmed_at=datetime.now(UTC)))
    rejected = notice_of(
        OrderRejected(**common, reason="no SKU-1 left", rejected_at=datetime.now(UTC))
    )
    assert (received.kind, confirmed.kind, rejected.kind) == ("received", "confirmed", "rejected")
    assert "2 item(s), 3.00 EUR" in received.message
    assert "no SKU-1 left" in rejected.message
    assert {received.order_id, confirmed.order_id, rejected.order_id} == {str(order.order_id)}
