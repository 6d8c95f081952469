"""An order's status from its facts: every arrival order of every set of answers."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from contracts import InventoryRejected, InventoryReserved, InvoiceIssued, ReservedLine
from contracts.api import OrderStatus
from services.order.lifecycle import (
    TIMED_OUT_REASON,
    ContradictoryFacts,
    Fact,
    fact_of,
    next_status,
    rejection_reason,
    status_of,
)

RESERVED, SHORT, INVOICED = Fact.STOCK_RESERVED, Fact.STOCK_REJECTED, Fact.INVOICE_ISSUED


@pytest.mark.parametrize(
    ("answers", "final"),
    [
        ((RESERVED, INVOICED), "confirmed"),
        ((SHORT, INVOICED), "rejected"),
        ((RESERVED,), "pending"),
        ((INVOICED,), "pending"),
        ((SHORT,), "rejected"),
        ((RESERVED, INVOICED, RESERVED, INVOICED), "confirmed"),  # heard twice, still one fact each
        ((SHORT, INVOICED, SHORT), "rejected"),
    ],
)
def test_every_arrival_order_walks_to_the_same_final_status(
    answers: tuple[Fact, ...], final: OrderStatus
) -> None:
    for arrival in itertools.permutations(answers):
        status: OrderStatus = "pending"
        walked = [status]
        known: set[Fact] = set()
        for fact in arrival:
            known.add(fact)
            moved = next_status(status, known)
            if moved is not None:
                status = moved
                walked.append(status)
        assert status == final, arrival
        assert walked == (["pending"] if final == "pending" else ["pending", final]), arrival


def test_a_rejection_outweighs_everything_else() -> None:
    assert status_of({RESERVED, SHORT, INVOICED}) == "rejected"


def test_a_final_status_never_moves() -> None:
    assert next_status("confirmed", {RESERVED, INVOICED}) is None
    with pytest.raises(ContradictoryFacts, match="confirmed order"):
        next_status("confirmed", {RESERVED, INVOICED, SHORT})


def test_a_timed_out_order_is_rejected_and_late_answers_change_nothing() -> None:
    timed_out = {Fact.TIMED_OUT}
    assert next_status("pending", timed_out) == "rejected"
    assert rejection_reason(dict.fromkeys(timed_out)) == TIMED_OUT_REASON
    for late in ({RESERVED}, {RESERVED, INVOICED}, {SHORT}, {SHORT, INVOICED}):
        assert next_status("rejected", timed_out | late) is None, late


def test_inventorys_reason_comes_before_the_timeout() -> None:
    facts: dict[Fact, str | None] = {Fact.TIMED_OUT: TIMED_OUT_REASON, SHORT: "out of stock"}
    assert rejection_reason(facts) == "out of stock"


def test_each_answer_establishes_its_fact_with_its_detail() -> None:
    order_id, invoice_id = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    reserved = InventoryReserved(
        order_id=order_id, items=[ReservedLine(sku="SKU-1", quantity=1)], reserved_at=now
    )
    short = InventoryRejected(order_id=order_id, reason="no SKU-1 left", rejected_at=now)
    issued = InvoiceIssued(
        order_id=order_id,
        invoice_id=invoice_id,
        customer_id="c-1",
        total=Decimal("3.00"),
        currency="EUR",
        issued_at=now,
    )
    assert fact_of(reserved) == (Fact.STOCK_RESERVED, None)
    assert fact_of(short) == (Fact.STOCK_REJECTED, "no SKU-1 left")
    assert fact_of(issued) == (Fact.INVOICE_ISSUED, str(invoice_id))
