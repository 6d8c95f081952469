"""The retry policy: bounded, exponential, jittered."""

from __future__ import annotations

import pytest

from bus.retry import RetryPolicy


def test_delays_double_within_the_jitter_band_and_stop_at_the_ceiling() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_ms=100, backoff_max_ms=1_000)
    for attempt, ceiling_s in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        delays = [policy.delay_s(attempt) for _ in range(200)]
        assert all(ceiling_s / 2 <= d <= ceiling_s for d in delays), (attempt, min(delays))
        assert len(set(delays)) > 1, "jitter spreads retries of replicas that failed together"


@pytest.mark.parametrize(("attempt", "gives_up"), [(1, False), (2, False), (3, True), (4, True)])
def test_gives_up_at_the_last_attempt(attempt: int, gives_up: bool) -> None:
    assert RetryPolicy(3, 100, 1_000).gives_up(attempt) is gives_up


def test_the_budget_is_time_every_event_is_tried_across_all_of_it() -> None:
    """A database restart takes as long as it takes, whatever the backoff: the attempt count
    follows from the budget, counting each wait at its shortest."""
    for backoff_ms, budget_s in [(200, 60.0), (1, 60.0), (50, 5.0), (1_000, 0.5)]:
        policy = RetryPolicy(100, backoff_ms, 30_000, budget_s)
        shortest_s = [policy._ceiling_ms(n) / 2000 for n in range(1, policy.attempts)]
        assert sum(shortest_s) >= budget_s, (backoff_ms, budget_s)
        assert sum(shortest_s[:-1]) < budget_s, "no attempt more than the budget needs"
    assert RetryPolicy(100, 200, 30_000, 60.0).attempts == 12
    assert RetryPolicy(5, 200, 30_000, 60.0).attempts == 5, "BUS_MAX_ATTEMPTS caps it"
    assert RetryPolicy(100, 200, 30_000, 0.0).attempts == 1, "no budget, no retry"
