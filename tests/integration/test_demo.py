"""`orderbus demo`: each scenario on each backend, and the facts it prints checked against what
really happened on the broker.

Every scenario on every backend (seconds each; Kafka's are the slowest, its test broker holds
a new group's first join for a few seconds: the saga's notification service joins three groups
one after another, about 15 s).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest

from bus import BACKENDS, BusSettings, Delivery, create_bus
from contracts import CloudEvent
from contracts.catalogue import CATALOGUE
from contracts.events import EVENTS
from orderbus import cli
from orderbus.demo.run import SCENARIOS, run
from orderbus.demo.stage import Outcome
from tests.brokers import BACKEND_KIND, Kind

pytestmark = pytest.mark.timeout(120)

CASES = [(number, backend) for number in SCENARIOS for backend in BACKENDS]


async def play(number: int, backend: str, broker_url: Callable[[Kind], str]) -> tuple[Outcome, str]:
    kind = BACKEND_KIND[backend]
    url = f"memory://{uuid.uuid4().hex[:8]}" if kind is None else broker_url(kind)
    printed: list[str] = []
    [outcome] = await run(BusSettings(backend=backend, url=url), [number], printed.append)
    return outcome, "\n".join(printed)


def table(text: str, caption: str) -> list[list[str]]:
    """The cells of each row of the printed table under `caption` (the saga's, one per order)."""
    lines = text.splitlines()
    start = lines.index(caption) + 3  # the caption, the headers, the rule
    end = next(n for n, line in enumerate(lines[start:], start) if not line[:1].isalpha())
    return [[c.strip() for c in line.split("  ") if c.strip()] for line in lines[start:end]]


def row(text: str, first_cell: str) -> list[str]:
    """The cells of the printed table row that starts with `first_cell`."""
    for line in text.splitlines():
        cells = line.split("  ")
        if cells[0].strip() == first_cell:
            return [c.strip() for c in cells if c.strip()]
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


@pytest.mark.parametrize(("number", "backend"), CASES, ids=[f"{n}-{b}" for n, b in CASES])
async def test_scenario_prints_what_happened(
    number: int, backend: str, broker_url: Callable[[Kind], str]
) -> None:
    outcome, text = await play(number, backend, broker_url)
    assert f"== {number}. " in text
    facts = outcome.facts
    if number == 1:
        assert facts == {"published": 1, "services_reached": 3}
        for service in ("inventory", "billing", "notification"):
            assert row(text, service)[-1] == "1", f"{service} got one copy"
        assert "reached 3 of 3 services" in outcome.lesson
    elif number == 2:
        first, second = facts["billing-1"], facts["billing-2"]
        assert facts["distinct"] == 20
        if backend == "redis-pubsub":
            assert first == second == 20, "no groups: every replica gets everything"
            assert "both replicas got all 20" in outcome.lesson
        else:
            assert first + second == 20, "each order handled by exactly one replica"
            assert min(first, second) > 0, "both replicas did a share"
            assert f"({first} + {second})" in outcome.lesson
        assert row(text, "billing-1")[2] == str(first)
        assert row(text, "billing-2")[2] == str(second)
    elif number == 3:
        offline = row(text, "offline (stopped)")
        if backend in ("memory", "redis-pubsub"):
            assert (facts["missed"], facts["caught_up"]) == (5, 0)
            assert offline[1:] == ["5", "0"]
            assert "missed 5 of 5" in outcome.lesson
        else:
            assert (facts["missed"], facts["caught_up"]) == (0, 5)
            assert offline[1:] == ["5", "5"]
            assert "caught up" in outcome.lesson
        assert row(text, "back online")[1:] == ["2", "2"]
    elif number == 4:
        if backend in ("memory", "kafka"):
            assert outcome.skipped is not None
            assert "skipped: " in text
        elif backend == "redis-pubsub":
            assert facts == {"redelivered": 0, "lost": 1}
            assert "the order is lost" in row(text, "3")[-1]
        else:
            assert facts == {"redelivered": 1, "lost": 0}
            assert row(text, "3")[1] == "billing-2"
            assert "got it again" in row(text, "3")[-1]
            assert row(text, "2")[-1].startswith("died inside its handler, exit 137")
    elif number == 5:
        attempts = 1 if backend == "redis-pubsub" else 3  # the demo's BUS_MAX_ATTEMPTS
        assert facts["attempts_before_dead_letter"] == attempts
        assert facts["dead_letters"] == 1
        assert facts["replayed"] == 1
        assert facts["handled_after_replay"] == 1
        # Kafka's dead-letter topic is a log: replayed entries stay until `purge --all`.
        assert facts["dead_letters_left"] == (1 if backend == "kafka" else 0)
        assert text.count("failed: demo bug") == attempts
        assert "dead-lettered to dlq.billing-" in text
    elif number == 6:
        assert facts["published"] == facts["handled"] == 60
        waiting = [int(line.split()[-1]) for line in text.splitlines() if line[:1].isdigit()]
        assert max(waiting) == facts["max_waiting"] > 0, "a queue built up"
        assert waiting[-1] == 0, "and drained"
        if backend == "memory":
            # The bounded queue (10) plus the event in the consumer's hands.
            assert facts["max_waiting"] <= 10 + 1
        else:
            assert facts["max_waiting"] > 20, "the broker took the burst at once"
    else:
        check_saga(outcome, text, backend)


def total(caption: str) -> Decimal:
    """What an order captioned `order 1cc16c6c (2 x KB-001): confirmed` costs."""
    found = re.search(r"\((\d+) x ([A-Z0-9-]+)\)", caption)
    assert found is not None, caption
    [price] = [p.unit_price for p in CATALOGUE if p.sku == found[2]]
    return int(found[1]) * price


def check_saga(outcome: Outcome, text: str, backend: str) -> None:
    """Five LIMITED-EDITION in stock and three orders of two: whichever order inventory takes
    third finds one left and is rejected; the order of a plentiful product is confirmed."""
    assert outcome.facts == {
        "confirmed": 3,
        "rejected": 1,
        "pending": 0,
        "voided": 1,
        "held_for_rejected": 0,
        "told": 4,
    }
    captions = [line for line in text.splitlines() if re.match(r"order [0-9a-f]{8} \(", line)]
    assert len(captions) == 4
    [rejected] = [c for c in captions if c.endswith(": rejected")]
    assert "(2 x LIMITED-EDITION)" in rejected
    assert sum("(2 x LIMITED-EDITION): confirmed" in c for c in captions) == 2
    assert table(text, rejected) == [
        ["order", "order_created", "pending"],
        ["inventory", "order_created", "short of stock: reserved nothing"],
        ["billing", "order_created", "invoice issued: 70.00 EUR"],  # 2 x 35.00
        [
            "order",
            "inventory_rejected",
            "rejected: insufficient stock for LIMITED-EDITION: wanted 2, available 1",
        ],
        ["billing", "order_rejected", "compensation: invoice voided"],
        [
            "inventory",
            "order_rejected",
            "compensation: none needed, it reserved nothing (all lines or none)",
        ],
        ["notification", "order_rejected", "told the customer: received, rejected"],
    ]
    for caption in captions:
        if caption.endswith(": confirmed"):
            rows = table(text, caption)
            decided = rows[3][1]
            assert decided in ("inventory_reserved", "invoice_issued"), "the second answer"
            assert rows == [
                ["order", "order_created", "pending"],
                ["inventory", "order_created", "stock reserved"],
                ["billing", "order_created", f"invoice issued: {total(caption)} EUR"],
                ["order", decided, "confirmed"],
                ["notification", "order_confirmed", "told the customer: received, confirmed"],
            ]
    assert row(text, "LIMITED-EDITION")[1:] == ["5", "4", "1"], "held for the confirmed only"
    assert "docs/saga.md" in outcome.lesson
    assert ("the saga is proven on" in outcome.lesson) == (backend == "redis-pubsub")


async def test_the_saga_leaves_the_systems_names_alone() -> None:
    """The saga's services run on the run's own topics and groups, so the demo can run beside
    `orderbus up` on one broker: a subscriber to every system topic hears none of its events."""
    settings = BusSettings(backend="memory", url=f"memory://{uuid.uuid4().hex[:8]}")
    system = create_bus(settings)
    heard: list[str] = []

    async def hear(event: CloudEvent, delivery: Delivery) -> None:
        heard.append(event.type)

    for topic in EVENTS:
        system.subscribe(topic, hear, group="billing", consumer="billing-1")
    await system.start()
    try:
        [outcome] = await run(settings, [7], lambda _: None)
    finally:
        await system.close()
    assert outcome.facts["rejected"] == 1
    assert heard == []


def test_the_cli_runs_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--backend", "memory", "--scenario", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("orderbus demo on memory")
    assert "lesson: fan-out" in printed
    assert cli.main(["demo", "--scenario", "9"]) == 2
