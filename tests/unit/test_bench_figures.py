from __future__ import annotations

from orderbus.bench.figures import Figure, percentile, render


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile(samples, 100) == 100
    assert percentile([], 99) == 0.0


def test_cost_is_bus_time_over_baseline_time_whichever_way_the_unit_runs() -> None:
    throughput = Figure("publish", "nats", "awaited", "msg/s", 500.0, 1_000.0, "nats-py")
    latency = Figure("latency", "nats", "p99", "ms", 3.0, 2.0, "nats-py", higher_is_better=False)
    assert throughput.ratio == 2.0
    assert latency.ratio == 1.5
    assert Figure("system", "nats", "RSS", "MiB", 90.0, None, "-").ratio is None


def test_the_table_shows_each_figure_next_to_its_baseline() -> None:
    table = render(
        [Figure("publish", "nats", "awaited", "msg/s", 500.0, 1_000.0, "nats-py")], "header"
    )
    header, columns, row = table.splitlines()
    assert header == "header"
    assert columns.split()[:6] == ["section", "backend", "metric", "bus", "baseline", "cost"]
    assert row.split()[:6] == ["publish", "nats", "awaited", "500", "1,000", "2.00x"]


def test_cost_is_the_median_of_the_interleaved_pairs_costs() -> None:
    """A neighbour's burst slows one pair, both its sides: the per-pair cost stays honest,
    where a median of each side would pair runs that never ran together."""
    figure = Figure(
        "consume",
        "nats",
        "consume",
        "msg/s",
        value=400.0,
        baseline=1_000.0,
        baseline_name="nats-py",
        runs=[500.0, 100.0, 400.0],  # the second pair ran on a busy machine
        baseline_runs=[1_000.0, 150.0, 1_000.0],
    )
    assert figure.pair_ratios == [2.0, 1.5, 2.5]
    assert figure.ratio == 2.0
    assert figure.spread == (1.5, 2.5)
    assert "1.50-2.50" in render([figure], "header")
