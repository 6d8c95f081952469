"""An order's status from its facts: every arrival order of every set of answers."""

from __future__ import annotations

import itertools

import pytest

from contracts.api import OrderStatus
from services.order.lifecycle import (
    TIMED_OUT_REASON,
    ContradictoryFacts,
    Fact,
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
