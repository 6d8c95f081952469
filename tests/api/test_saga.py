"""The saga's rules, one service at a time, in-process on the memory bus: answers that arrive
out of order or twice give the same final state, and compensation undoes what was done.

The order in which events arrive is the test's to choose here: each event is published only
once the service has processed the one before it. The whole saga across real processes and
brokers is `tests/e2e/test_saga.py`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from bus import Bus
from contracts import (
    INVENTORY_REJECTED,
    INVENTORY_RESERVED,
    INVOICE_ISSUED,
    INVOICE_VOIDED,
    ORDER_CONFIRMED,
    ORDER_CREATED,
    ORDER_REJECTED,
    CloudEvent,
    InventoryRejected,
    InventoryReserved,
    InvoiceIssued,
    OrderRejected,
    ReservedLine,
    wrap,
)
from orderbus.specs import create_app
from services.order.lifecycle import TIMED_OUT_REASON
from services.order.settings import OrderSettings
from services.order.timeouts import TIMEOUT_CAUSE, decide_overdue
from services.runtime.settings import ServiceSettings
from tests.api.conftest import Running, order_event, recording
from tests.integration.conftest import Recorder
from tests.polling import eventually

SHORT = "insufficient stock for LIMITED-EDITION: wanted 6, available 5"


@pytest.fixture
async def outcomes(settings: ServiceSettings) -> AsyncIterator[Recorder]:
    """Every event the services under test publish, as a downstream service would see it."""
    topics = (
        ORDER_CONFIRMED,
        ORDER_REJECTED,
        INVOICE_ISSUED,
        INVOICE_VOIDED,
        INVENTORY_RESERVED,
        INVENTORY_REJECTED,
    )
    async with recording(settings, *topics) as recorder:
        yield recorder


def published(outcomes: Recorder, event_type: str, order_id: str) -> list[CloudEvent]:
    return [e for e, _ in outcomes.received if e.type == event_type and e.subject == order_id]


async def deliver(bus: Bus, service: httpx.AsyncClient, event: CloudEvent) -> None:
    """Publish `event` and return once `service` has processed it (once more, if a duplicate)."""

    async def deliveries() -> int:
        rows = (await service.get("/processed", params={"order_id": event.subject})).json()
        return sum(r["deliveries"] for r in rows["processed"] if r["event_id"] == str(event.id))

    before = await deliveries()
    await bus.publish(event.type, event)

    async def one_more() -> bool | None:
        return True if await deliveries() > before else None

    await eventually(one_more, within_s=10)


# -- the order service: facts in any order, the status they imply --------------------------


def reserved(order_id: str) -> CloudEvent:
    payload = InventoryReserved(
        order_id=uuid.UUID(order_id),
        items=[ReservedLine(sku="KB-001", quantity=1)],
        reserved_at=datetime.now(UTC),
    )
    return wrap(INVENTORY_RESERVED, payload, correlationid="c-1")


def short(order_id: str) -> CloudEvent:
    payload = InventoryRejected(
        order_id=uuid.UUID(order_id), reason=SHORT, rejected_at=datetime.now(UTC)
    )
    return wrap(INVENTORY_REJECTED, payload, correlationid="c-1")


def issued(order_id: str) -> CloudEvent:
    payload = InvoiceIssued(
        order_id=uuid.UUID(order_id),
        invoice_id=uuid.uuid4(),
        customer_id="alice",
        total=Decimal("89.00"),
        currency="EUR",
        issued_at=datetime.now(UTC),
    )
    return wrap(INVOICE_ISSUED, payload, correlationid="c-1")


ANSWERS = {"reserved": reserved, "short": short, "issued": issued}
NAME_OF = {INVENTORY_RESERVED: "reserved", INVENTORY_REJECTED: "short", INVOICE_ISSUED: "issued"}


@pytest.mark.parametrize(
    ("arrivals", "final", "caused_by"),
    [
        (["reserved", "issued"], "confirmed", INVOICE_ISSUED),
        (["issued", "reserved"], "confirmed", INVENTORY_RESERVED),
        (["issued", "issued*", "reserved", "reserved*"], "confirmed", INVENTORY_RESERVED),
        (["short", "issued"], "rejected", INVENTORY_REJECTED),
        (["issued", "short"], "rejected", INVENTORY_REJECTED),
        (["short", "short*", "issued", "issued*"], "rejected", INVENTORY_REJECTED),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, list) else str(v),
)
async def test_the_order_status_depends_on_the_answers_not_on_their_order(
    running: Running,
    publisher: Bus,
    outcomes: Recorder,
    arrivals: list[str],
    final: str,
    caused_by: str,
) -> None:
    """`name*` delivers the previous `name` event again: the same event id, twice."""
    async with running("order") as order:
        placed = await order.post(
            "/orders", json={"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1}]}
        )
        order_id = placed.json()["order_id"]
        sent: dict[str, CloudEvent] = {}
        for arrival in arrivals:
            name = arrival.rstrip("*")
            if not arrival.endswith("*"):
                sent[name] = ANSWERS[name](order_id)
            await deliver(publisher, order, sent[name])

        view = (await order.get(f"/orders/{order_id}")).json()
        assert view["status"] == final
        assert [(s["status"], s["event_type"]) for s in view["history"]] == [
            ("pending", ORDER_CREATED),
            (final, caused_by),
        ]
        cause = view["history"][1]
        assert cause["event_id"] == str(sent[NAME_OF[caused_by]].id)
        assert cause["reason"] == (SHORT if final == "rejected" else None)

        announced = ORDER_CONFIRMED if final == "confirmed" else ORDER_REJECTED
        await outcomes.wait_until(lambda: bool(published(outcomes, announced, order_id)))
        assert len(published(outcomes, announced, order_id)) == 1
        event = published(outcomes, announced, order_id)[0]
        assert event.correlationid == "c-1", "the saga's events share the order's correlation id"
        other = ORDER_REJECTED if final == "confirmed" else ORDER_CONFIRMED
        assert published(outcomes, other, order_id) == []


async def test_a_replay_of_a_decided_order_gets_the_first_answer_again(
    running: Running, publisher: Bus
) -> None:
    body = {"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1}]}
    headers = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    async with running("order") as order:
        first = await order.post("/orders", json=body, headers=headers)
        order_id = first.json()["order_id"]
        for answer in (reserved(order_id), issued(order_id)):
            await deliver(publisher, order, answer)
        assert (await order.get(f"/orders/{order_id}")).json()["status"] == "confirmed"

        again = await order.post("/orders", json=body, headers=headers)
        assert (again.status_code, again.json()) == (202, first.json())
        assert first.json()["status"] == "pending"


async def test_an_answer_about_an_unknown_order_is_dead_lettered(
    running: Running, publisher: Bus, settings: ServiceSettings
) -> None:
    from bus.backends.memory.bus import dead_letters

    async with running("order"):
        stray = reserved(str(uuid.uuid4()))
        await publisher.publish(INVENTORY_RESERVED, stray)

        async def dead() -> list[Any] | None:
            letters = dead_letters(settings.bus.resolved_url, "order")
            return letters or None

        letters = await eventually(dead, within_s=30)
        assert letters[0].event_id == str(stray.id)
        assert "unknown here" in letters[0].error


async def test_an_unknown_order_in_a_batch_of_answers_is_dead_lettered_alone(
    running: Running, publisher: Bus, settings: ServiceSettings, outcomes: Recorder
) -> None:
    """The order service takes a batch of answers in one call (`record_answers`): one answer
    about an unknown order fails that call; handled one at a time, only it is dead-lettered.
    The same fact twice in the batch confirms its order once."""
    from bus.backends.memory.bus import dead_letters

    body = {"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1}]}
    async with running("order") as order:
        first, second = [
            (await order.post("/orders", json=body)).json()["order_id"] for _ in range(2)
        ]
        stray = issued(str(uuid.uuid4()))
        again = issued(first)  # the same fact from another event: recorded once
        batch = [issued(first), stray, issued(second), again]
        await publisher.publish_many([(INVOICE_ISSUED, e) for e in batch])

        async def dead() -> list[Any] | None:
            return dead_letters(settings.bus.resolved_url, "order") or None

        letters = await eventually(dead, within_s=30)
        assert [letter.event_id for letter in letters] == [str(stray.id)]
        assert "unknown here" in letters[0].error
        await publisher.publish_many([(INVENTORY_RESERVED, reserved(o)) for o in (first, second)])
        await outcomes.wait_until(
            lambda: all(published(outcomes, ORDER_CONFIRMED, o) for o in (first, second))
        )
        for order_id in (first, second):
            history = (await order.get(f"/orders/{order_id}")).json()
            assert history["status"] == "confirmed"
            assert len(published(outcomes, ORDER_CONFIRMED, order_id)) == 1


async def test_a_batch_of_answers_logs_its_decisions_in_one_info_line(
    running: Running, publisher: Bus, outcomes: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Per-order decision lines are DEBUG; the batch that decided them writes one INFO line."""
    caplog.set_level(logging.DEBUG, logger="services.order.handlers")
    caplog.set_level(logging.DEBUG, logger="bus")
    body = {"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1}]}
    async with running("order") as order:
        ids = [(await order.post("/orders", json=body)).json()["order_id"] for _ in range(3)]
        for order_id in ids:  # half the facts, one at a time: nothing decided yet
            await deliver(publisher, order, reserved(order_id))
        await publisher.publish_many([(INVOICE_ISSUED, issued(o)) for o in ids])
        await outcomes.wait_until(lambda: all(published(outcomes, ORDER_CONFIRMED, o) for o in ids))
    lines = [r for r in caplog.records if r.name == "services.order.handlers"]
    infos = [r.getMessage() for r in lines if r.levelno == logging.INFO]
    debugs = [r.getMessage() for r in lines if r.levelno == logging.DEBUG]
    assert infos == ["orders decided: 3 (3 confirmed); answers: 3 invoice_issued"]
    assert sorted(m.split()[1] for m in debugs) == sorted(ids)
    assert all(" confirmed by invoice_issued " in m for m in debugs)
    assert_no_batch_redone(caplog)


def assert_no_batch_redone(caplog: pytest.LogCaptureFixture) -> None:
    """A batched call that raised is redone one event at a time, and the outcome may look the
    same: the batch tests check that every batch went through as one."""
    redone = [r.getMessage() for r in caplog.records if "one at a time now" in r.getMessage()]
    assert redone == []


# -- billing: the invoice of a rejected order is voided, whatever came first ---------------


def rejection_of(created: CloudEvent) -> CloudEvent:
    data = created.data
    payload = OrderRejected(
        order_id=uuid.UUID(data["order_id"]),
        customer_id=data["customer_id"],
        total=Decimal(data["total"]),
        currency=data["currency"],
        reason=SHORT,
        rejected_at=datetime.now(UTC),
    )
    return wrap(ORDER_REJECTED, payload, correlationid=created.correlationid)


@pytest.mark.parametrize(
    "arrivals",
    [
        ["created", "rejected"],
        ["rejected", "created"],
        ["created", "created*", "rejected", "rejected*"],
        ["rejected", "rejected*", "created", "created*"],
    ],
    ids=lambda v: "-".join(v),
)
async def test_a_rejected_orders_invoice_is_voided_once_whatever_came_first(
    running: Running, publisher: Bus, outcomes: Recorder, arrivals: list[str]
) -> None:
    created = order_event(("LIMITED-EDITION", 6))
    events = {"created": created, "rejected": rejection_of(created)}
    order_id = str(created.subject)
    async with running("billing") as billing:
        for arrival in arrivals:
            await deliver(publisher, billing, events[arrival.rstrip("*")])

        invoice = (await billing.get(f"/invoices/{order_id}")).json()
        assert invoice["status"] == "voided"
        assert invoice["total"] == "210.00"
        assert invoice["void_reason"] == f"order rejected: {SHORT}"
        await outcomes.wait_until(lambda: bool(published(outcomes, INVOICE_VOIDED, order_id)))
        issued_events = published(outcomes, INVOICE_ISSUED, order_id)
        voided_events = published(outcomes, INVOICE_VOIDED, order_id)
        assert len(issued_events) == 1, "one invoice per order"
        assert len(voided_events) == 1
        assert voided_events[0].data["invoice_id"] == invoice["invoice_id"]
        assert issued_events[0].data["invoice_id"] == invoice["invoice_id"]


async def test_a_batch_of_rejections_voids_each_invoice_once(
    running: Running, publisher: Bus, outcomes: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """One call for the batch (`void_invoices`): a rejection twice in it voids once, and one
    that overtook its `order_created` issues the invoice and voids it, which the late
    `order_created` then finds."""
    caplog.set_level(logging.DEBUG, logger="bus")
    invoiced, overtaken = order_event(("KB-001", 1)), order_event(("LIMITED-EDITION", 6))
    ids = [str(invoiced.subject), str(overtaken.subject)]
    async with running("billing") as billing:
        await deliver(publisher, billing, invoiced)
        # Each rejection twice, as two events (the inbox drops a repeated event id).
        rejections = [rejection_of(c) for c in (invoiced, overtaken, invoiced, overtaken)]
        await publisher.publish_many([(ORDER_REJECTED, e) for e in rejections])
        await outcomes.wait_until(lambda: all(published(outcomes, INVOICE_VOIDED, o) for o in ids))
        await deliver(publisher, billing, overtaken)  # late: finds its invoice

        for order_id in ids:
            invoice = (await billing.get(f"/invoices/{order_id}")).json()
            assert invoice["status"] == "voided"
            [issued_event] = published(outcomes, INVOICE_ISSUED, order_id)
            [voided_event] = published(outcomes, INVOICE_VOIDED, order_id)
            assert issued_event.data["invoice_id"] == invoice["invoice_id"]
            assert voided_event.data["invoice_id"] == invoice["invoice_id"]
    assert_no_batch_redone(caplog)


async def test_a_confirmed_orders_invoice_stands(
    running: Running, publisher: Bus, outcomes: Recorder
) -> None:
    created = order_event(("KB-001", 1))
    async with running("billing") as billing:
        await deliver(publisher, billing, created)
        invoice = (await billing.get(f"/invoices/{created.subject}")).json()
        assert (invoice["status"], invoice["voided_at"]) == ("issued", None)
        await outcomes.wait_until(
            lambda: bool(published(outcomes, INVOICE_ISSUED, str(created.subject)))
        )
        event = published(outcomes, INVOICE_ISSUED, str(created.subject))[0]
        assert event.data["total"] == "89.00"
        assert event.correlationid == created.correlationid


# -- inventory: nothing stays reserved for a rejected order --------------------------------


async def test_a_rejection_gives_back_what_was_reserved(
    running: Running, publisher: Bus, outcomes: Recorder
) -> None:
    """Inventory rejects all-or-none itself; an order rejected for another reason (billing,
    a later step) may hold stock, and its rejection must give it back exactly once."""
    created = order_event(("KB-001", 3), ("LIMITED-EDITION", 2))
    order_id = str(created.subject)
    async with running("inventory") as inventory:
        await deliver(publisher, inventory, created)
        assert (await inventory.get(f"/reservations/{order_id}")).json()["status"] == "reserved"
        limited = (await inventory.get("/stock/LIMITED-EDITION")).json()
        assert (limited["available"], limited["reserved"]) == (3, 2)
        await outcomes.wait_until(lambda: bool(published(outcomes, INVENTORY_RESERVED, order_id)))

        rejection = rejection_of(created)
        await deliver(publisher, inventory, rejection)
        await deliver(publisher, inventory, rejection)  # and again: given back once

        assert (await inventory.get(f"/reservations/{order_id}")).json()["status"] == "released"
        limited = (await inventory.get("/stock/LIMITED-EDITION")).json()
        assert (limited["available"], limited["reserved"]) == (5, 0)
        keyboards = (await inventory.get("/stock/KB-001")).json()
        assert keyboards["reserved"] == 0


async def test_a_rejection_that_comes_first_leaves_nothing_to_reserve(
    running: Running, publisher: Bus, outcomes: Recorder
) -> None:
    created = order_event(("LIMITED-EDITION", 2))
    order_id = str(created.subject)
    async with running("inventory") as inventory:
        await deliver(publisher, inventory, rejection_of(created))
        await deliver(publisher, inventory, created)

        reservation = (await inventory.get(f"/reservations/{order_id}")).json()
        assert reservation["status"] == "cancelled"
        limited = (await inventory.get("/stock/LIMITED-EDITION")).json()
        assert (limited["available"], limited["reserved"]) == (5, 0)
        assert published(outcomes, INVENTORY_RESERVED, order_id) == []


async def test_a_batch_of_rejections_gives_back_each_reservation_once(
    running: Running, publisher: Bus, outcomes: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """One call for the batch (`release`): two reservations given back, each once though one
    rejection comes twice; an order inventory rejected itself holds nothing to give back; a
    rejection that overtook its `order_created` leaves nothing to reserve."""
    caplog.set_level(logging.DEBUG, logger="bus")
    first = order_event(("KB-001", 3), ("LIMITED-EDITION", 2))
    second = order_event(("LIMITED-EDITION", 1))
    short_one = order_event(("LIMITED-EDITION", 6))
    overtaken = order_event(("LIMITED-EDITION", 1))
    async with running("inventory") as inventory:
        for created in (first, second, short_one):
            await deliver(publisher, inventory, created)
        limited = (await inventory.get("/stock/LIMITED-EDITION")).json()
        assert (limited["available"], limited["reserved"]) == (2, 3)

        rejected = [first, second, first, short_one, overtaken]
        await publisher.publish_many([(ORDER_REJECTED, rejection_of(c)) for c in rejected])
        expected = {
            str(first.subject): "released",
            str(second.subject): "released",
            str(short_one.subject): "rejected",
            str(overtaken.subject): "cancelled",
        }

        async def statuses() -> dict[str, str] | None:
            found = {
                order_id: (await inventory.get(f"/reservations/{order_id}")).json().get("status")
                for order_id in expected
            }
            return found if found == expected else None

        await eventually(statuses, within_s=10)
        await deliver(publisher, inventory, overtaken)

        limited = (await inventory.get("/stock/LIMITED-EDITION")).json()
        assert (limited["available"], limited["reserved"]) == (5, 0)
        keyboards = (await inventory.get("/stock/KB-001")).json()
        assert (keyboards["available"], keyboards["reserved"]) == (100_000, 0)
        assert (await statuses()) == expected
        assert published(outcomes, INVENTORY_RESERVED, str(overtaken.subject)) == []
    assert_no_batch_redone(caplog)


async def test_a_short_order_is_answered_with_the_reason(
    running: Running, publisher: Bus, outcomes: Recorder
) -> None:
    created = order_event(("KB-001", 2), ("LIMITED-EDITION", 6))
    order_id = str(created.subject)
    async with running("inventory") as inventory:
        await deliver(publisher, inventory, created)
        await outcomes.wait_until(lambda: bool(published(outcomes, INVENTORY_REJECTED, order_id)))
        [answer] = published(outcomes, INVENTORY_REJECTED, order_id)
        assert answer.data["reason"] == SHORT
        assert answer.dataschema == "urn:orderbus:schema:inventory_rejected:1"
        assert published(outcomes, INVENTORY_RESERVED, order_id) == []


# -- the order service: no order waits for ever ---------------------------------------------


async def test_an_order_nobody_decides_is_rejected_as_timed_out(
    settings: ServiceSettings, publisher: Bus, outcomes: Recorder
) -> None:
    """Billing never answers (dead-lettered, lost, never started): after the timeout the
    order is rejected, announced once, and a late answer changes nothing."""
    app = create_app("order", settings, own=OrderSettings(decision_timeout_s=1.0))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://order") as order:
            placed = await order.post(
                "/orders",
                json={"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1}]},
            )
            order_id = placed.json()["order_id"]
            await deliver(publisher, order, reserved(order_id))

            async def decided() -> dict[str, Any] | None:
                view: dict[str, Any] = (await order.get(f"/orders/{order_id}")).json()
                return view if view["status"] != "pending" else None

            view = await eventually(decided, within_s=10)
            assert view["status"] == "rejected"
            steps = [(s["status"], s["event_type"], s["reason"]) for s in view["history"]]
            assert steps == [
                ("pending", ORDER_CREATED, None),
                ("rejected", TIMEOUT_CAUSE, TIMED_OUT_REASON),
            ]
            await outcomes.wait_until(lambda: bool(published(outcomes, ORDER_REJECTED, order_id)))
            [rejection] = published(outcomes, ORDER_REJECTED, order_id)
            assert rejection.data["reason"] == TIMED_OUT_REASON

            await deliver(publisher, order, issued(order_id))  # billing, late
            again = (await order.get(f"/orders/{order_id}")).json()
            assert (again["status"], again["history"]) == ("rejected", view["history"])
    assert published(outcomes, ORDER_CONFIRMED, order_id) == []
    assert len(published(outcomes, ORDER_REJECTED, order_id)) == 1


async def test_only_orders_pending_past_the_timeout_are_decided(
    settings: ServiceSettings, publisher: Bus
) -> None:
    own = OrderSettings()
    app = create_app("order", settings, own=own)
    body = {"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1}]}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://order") as order:
            answered = (await order.post("/orders", json=body)).json()["order_id"]
            waiting = (await order.post("/orders", json=body)).json()["order_id"]
            for answer in (reserved(answered), issued(answered)):
                await deliver(publisher, order, answer)
            runtime = app.state.runtime
            timeout_s = own.decision_timeout_s
            assert await decide_overdue(runtime, timeout_s) == 0, "none is overdue yet"
            later = datetime.now(UTC) + timedelta(seconds=timeout_s + 1)
            assert await decide_overdue(runtime, timeout_s, now=later) == 1
            assert await decide_overdue(runtime, timeout_s, now=later) == 0, "decided once"
            statuses = [
                (await order.get(f"/orders/{i}")).json()["status"] for i in (answered, waiting)
            ]
            assert statuses == ["confirmed", "rejected"]
