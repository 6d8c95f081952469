"""docs/metrics.md and the registry agree: every metric, its type and labels, both ways."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

from prometheus_client import CollectorRegistry

from bus import BusSettings, create_bus
from bus.prometheus import instrument
from services.runtime.metrics import Metrics

TABLE = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
ROW = re.compile(r"^\| `(?P<name>[a-z_]+)` \| (?P<type>\w+) \| (?P<labels>[^|]+) \|")


def documented() -> set[tuple[str, str, tuple[str, ...]]]:
    rows = set()
    for line in TABLE.read_text().splitlines():
        if (match := ROW.match(line)) is not None:
            labels = tuple(sorted(re.findall(r"`(\w+)`", match["labels"])))
            rows.add((match["name"], match["type"], labels))
    return rows


def registered(registry: CollectorRegistry) -> set[tuple[str, str, tuple[str, ...]]]:
    rows = set()
    for family in registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        collector = registry._names_to_collectors[family.name if family.type != "counter" else name]
        labels = tuple(sorted(cast(Any, collector)._labelnames))  # a metric's label names
        rows.add((name, family.type, labels))
    return rows


def test_documented_table_matches_the_registry() -> None:
    metrics = Metrics("billing", "billing-1")
    # FastStream's middleware registers its metrics in ours; any FastStream backend will do.
    bus = create_bus(BusSettings(backend="redis-streams"))
    assert instrument(bus, metrics.registry, service="billing", instance="billing-1")
    table, registry = documented(), registered(metrics.registry)
    assert table == registry, (
        f"only documented: {table - registry}; only registered: {registry - table}"
    )


def test_memory_bus_gets_no_faststream_middleware() -> None:
    bus = create_bus(BusSettings(backend="memory", url="memory://metrics-table"))
    assert not instrument(bus, CollectorRegistry(), service="billing", instance="billing-1")


def test_an_event_type_no_contract_names_is_counted_as_other() -> None:
    """A sender chooses `type`: each new value must not become a series of its own for good."""
    metrics = Metrics("billing", "billing-1")
    for n in range(50):
        metrics.count(metrics.consumed, f"made_up_{n}")
        metrics.observe_handling(f"made_up_{n}", 0.01)
    metrics.count(metrics.consumed, "order_created")
    types = {
        sample.labels["type"]
        for family in metrics.registry.collect()
        for sample in family.samples
        if "type" in sample.labels
    }
    assert types == {"other", "order_created"}
