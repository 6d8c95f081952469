"""`orderbus demo`: each scenario on each backend, and the facts it prints checked against what
really happened on the broker.

Every scenario on every backend (seconds each; Kafka's are the slowest, its test broker holds
a new group's first join for a few seconds).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from bus import BACKENDS, BusSettings
from services import cli
from services.demo.run import SCENARIOS, run
from services.demo.stage import Outcome
from tests.brokers import BACKEND_KIND, Kind

pytestmark = pytest.mark.timeout(120)

CASES = [(number, backend) for number in SCENARIOS for backend in BACKENDS]


async def play(number: int, backend: str, broker_url: Callable[[Kind], str]) -> tuple[Outcome, str]:
    kind = BACKEND_KIND[backend]
    url = f"memory://{uuid.uuid4().hex[:8]}" if kind is None else broker_url(kind)
    printed: list[str] = []
    [outcome] = await run(BusSettings(backend=backend, url=url), [number], printed.append)
    return outcome, "\n".join(printed)


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
    else:
        assert facts["published"] == facts["handled"] == 60
        waiting = [int(line.split()[-1]) for line in text.splitlines() if line[:1].isdigit()]
        assert max(waiting) == facts["max_waiting"] > 0, "a queue built up"
        assert waiting[-1] == 0, "and drained"
        if backend == "memory":
            # The bounded queue (10) plus the event in the consumer's hands.
            assert facts["max_waiting"] <= 10 + 1
        else:
            assert facts["max_waiting"] > 20, "the broker took the burst at once"


def test_the_cli_runs_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--backend", "memory", "--scenario", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("orderbus demo on memory")
    assert "lesson: fan-out" in printed
    assert cli.main(["demo", "--scenario", "9"]) == 2
