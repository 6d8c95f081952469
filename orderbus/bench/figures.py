"""Figures: medians of repeated runs, each next to the baseline it is judged against."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def percentile(samples: list[float], q: float) -> float:
    """The `q`-th percentile (0-100) by the nearest-rank method; 0.0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = math.ceil(q / 100 * len(ordered))  # 1-based
    return ordered[max(0, min(len(ordered), rank) - 1)]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


@dataclass(frozen=True)
class Figure:
    """One line of the table: the bus (or service) figure and its same-run baseline."""

    section: str
    backend: str
    metric: str
    unit: str
    value: float
    """Median over `runs`."""
    baseline: float | None
    """Median over the same number of runs of the baseline, interleaved with `value`'s."""
    baseline_name: str
    runs: list[float] = field(default_factory=list)
    baseline_runs: list[float] = field(default_factory=list)
    higher_is_better: bool = True
    note: str = ""

    def _cost(self, value: float, baseline: float) -> float | None:
        if baseline == 0 or value == 0:
            return None
        return baseline / value if self.higher_is_better else value / baseline

    @property
    def pair_ratios(self) -> list[float]:
        """The cost of each run against the baseline run interleaved with it."""
        if len(self.runs) != len(self.baseline_runs):
            return []
        costs = (self._cost(v, b) for v, b in zip(self.runs, self.baseline_runs, strict=True))
        return [c for c in costs if c is not None]

    @property
    def ratio(self) -> float | None:
        """Cost of the bus relative to the baseline (>1: the bus is slower): the median of
        the per-pair costs, so a neighbour's load on one pair weighs on both of its sides;
        medians of each side where the runs do not pair up."""
        if self.baseline is None:
            return None
        if pairs := self.pair_ratios:
            return median(pairs)
        return self._cost(self.value, self.baseline)

    @property
    def spread(self) -> tuple[float, float] | None:
        """The lowest and highest per-pair cost."""
        pairs = self.pair_ratios
        return (min(pairs), max(pairs)) if len(pairs) > 1 else None

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "ratio": self.ratio,
            "pair_ratios": self.pair_ratios,
            "spread": self.spread,
        }


def _number(value: float, unit: str) -> str:
    if unit in ("ms", "per order"):
        return f"{value:.2f}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def render(figures: list[Figure], header: str) -> str:
    rows = [
        ("section", "backend", "metric", "bus", "baseline", "cost", "spread", "unit", "baseline is")
    ]
    for f in figures:
        ratio, spread = f.ratio, f.spread
        rows.append(
            (
                f.section,
                f.backend,
                f.metric,
                _number(f.value, f.unit),
                "-" if f.baseline is None else _number(f.baseline, f.unit),
                "-" if ratio is None else f"{ratio:.2f}x",
                "-" if spread is None else f"{spread[0]:.2f}-{spread[1]:.2f}",
                f.unit,
                f.baseline_name + (f"; {f.note}" if f.note else ""),
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    numeric = {3, 4, 5, 6}
    lines = [header]
    for row in rows:
        cells = [
            cell.rjust(w) if c in numeric else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def write_json(path: Path, figures: list[Figure], machine: dict[str, Any]) -> None:
    document = {"machine": machine, "figures": [f.as_json() for f in figures]}
    path.write_text(json.dumps(document, indent=2) + "\n")
