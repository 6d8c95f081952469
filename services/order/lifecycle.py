"""An order's status as a function of the facts recorded about it (no I/O: unit-tested alone).

Deriving the status from the set of facts, rather than stepping a state machine per event,
is what makes the saga order-independent: the same facts give the same status whichever
arrived first, and a fact heard twice is still one fact.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from enum import StrEnum

from contracts import InventoryRejected, InventoryReserved, InvoiceIssued
from contracts.api import OrderStatus


class Fact(StrEnum):
    STOCK_RESERVED = "stock_reserved"
    STOCK_REJECTED = "stock_rejected"
    INVOICE_ISSUED = "invoice_issued"
    TIMED_OUT = "timed_out"
    """No decision within `ORDER_DECISION_TIMEOUT_S`: established by the order service itself."""


Answer = InventoryReserved | InventoryRejected | InvoiceIssued
"""What the order service hears back about an order: its subscriptions."""


def fact_of(answer: Answer) -> tuple[Fact, str | None]:
    """The fact `answer` establishes about its order, with its detail."""
    if isinstance(answer, InventoryReserved):
        return Fact.STOCK_RESERVED, None
    if isinstance(answer, InventoryRejected):
        return Fact.STOCK_REJECTED, answer.reason
    return Fact.INVOICE_ISSUED, str(answer.invoice_id)


TIMED_OUT_REASON = "timed out"

FINAL: frozenset[OrderStatus] = frozenset({"confirmed", "rejected"})


class ContradictoryFacts(Exception):
    """The facts would move an order out of a final status: another service broke its
    contract (inventory answers once per order). Raised, so the event is dead-lettered."""


def status_of(facts: Set[Fact]) -> OrderStatus:
    if Fact.STOCK_REJECTED in facts:
        return "rejected"  # whatever else is known: billing voids the invoice
    if Fact.TIMED_OUT in facts:
        return "rejected"  # a late answer changes nothing: compensation undoes what it did
    if Fact.STOCK_RESERVED in facts and Fact.INVOICE_ISSUED in facts:
        return "confirmed"
    return "pending"


def next_status(current: OrderStatus, facts: Set[Fact]) -> OrderStatus | None:
    """The status to move to now, or None to stay."""
    derived = status_of(facts)
    if derived == current:
        return None
    if current in FINAL:
        raise ContradictoryFacts(f"{current} order, but the facts {sorted(facts)} say {derived}")
    return derived


def rejection_reason(facts: Mapping[Fact, str | None]) -> str:
    """Why a rejected order was rejected: inventory's reason, or that no decision came."""
    if Fact.STOCK_REJECTED in facts:
        return facts[Fact.STOCK_REJECTED] or "rejected"
    return TIMED_OUT_REASON
