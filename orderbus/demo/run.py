"""Run the scenarios in order on one backend and print each one's table and lesson."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from bus import BusSettings
from orderbus.demo import failures, flow, saga
from orderbus.demo.stage import Outcome, Stage, on_stage

Scenario = Callable[[Stage], Awaitable[Outcome]]
SCENARIOS: dict[int, Scenario] = {
    1: flow.fan_out,
    2: flow.competing_consumers,
    3: flow.offline_subscriber,
    4: failures.crash_and_redelivery,
    5: failures.poison_and_replay,
    6: failures.backpressure,
    7: saga.saga,
}


def demo_settings(base: BusSettings) -> BusSettings:
    """The backend and URL given, with timings short enough to watch and a small bound."""
    return base.model_copy(
        update={
            "prefetch": 1,  # one at a time, so replicas visibly take turns
            "redelivery_after_ms": 1_000,  # a crashed consumer's event comes back in a second
            "max_attempts": 3,
            "retry_backoff_ms": 100,
            "retry_backoff_max_ms": 400,
            "memory_queue_size": 10,
        }
    )


async def run(
    base: BusSettings, numbers: Sequence[int], show: Callable[[str], None] = print
) -> list[Outcome]:
    settings = demo_settings(base)
    show(f"orderbus demo on {settings.backend} ({settings.safe_url})\n")
    outcomes = []
    for number in numbers:
        outcome = await on_stage(settings, SCENARIOS[number])
        show(outcome.render())
        outcomes.append(outcome)
    replicas = "" if settings.backend == "memory" else f" --backend {settings.backend}"
    show(
        f"Watch it live: orderbus up{replicas} --replicas billing=2, then open the dashboard "
        "URL it prints. Each concept, with a diagram: docs/README.md"
    )
    return outcomes
