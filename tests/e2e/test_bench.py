"""`orderbus bench --quick` runs and prints its table: a smoke test, never a timed one.

No measured figure is asserted: the rates and times belong to the machine, the table's shape
to the code; only the per-order counts that the saga itself fixes are.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.brokers import Kind


def test_bench_quick_prints_the_table_and_writes_the_same_figures(
    broker_url: Callable[[Kind], str], tmp_path: Path
) -> None:
    redis, nats = broker_url("redis"), broker_url("nats")
    out = tmp_path / "bench.json"
    # redis-streams for every section; nats for the broker sections, a second raw client.
    finished = subprocess.run(
        [
            sys.executable, "-m", "orderbus.cli", "bench", "--quick",
            "--backend", "redis-streams", "--backend", "nats",
            "--url", f"redis-streams={redis}", "--url", f"nats={nats}",
            "--json", str(out),
        ],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3_000:]
    lines = finished.stdout.splitlines()
    assert lines[0].startswith("orderbus bench --quick:")
    generator = "wrk" if shutil.which("wrk") else "httpx"
    assert f"HTTP load by {generator};" in lines[0]
    assert ("wrk is not installed" in finished.stderr) == (generator == "httpx")
    assert lines[1].split()[:4] == ["section", "backend", "metric", "bus"]
    rows = {(line.split()[0], line.split()[1]) for line in lines[2:]}
    for backend in ("redis-streams", "nats"):
        assert {("publish", backend), ("consume", backend), ("latency", backend)} <= rows
    assert {("http", "redis-streams"), ("system", "redis-streams")} <= rows
    document = json.loads(out.read_text())
    assert document["machine"]["load_generator"] == generator
    figures = document["figures"]
    assert len(figures) == len(lines) - 2
    assert {f["metric"] for f in figures} >= {
        "publish awaited",
        "consume",
        "p99 at 1,000/s",
        "POST /orders p99",
        "orders committed by all 3",
        "orders decided (saga ended)",
        "CPU per order (all)",
        "orders lost (billing)",
        "orders lost (undecided)",
        "database transactions",
        "database statements",
        "log lines",
    }
    # Not the machine's figures but the saga's shape: every accepted order is decided, so each
    # went through three subscribers, two answers and its decision, and four relay publishes.
    per_order = {f["metric"]: f["value"] for f in figures if f["unit"] == "per order"}
    assert per_order["deliveries"] >= 6, per_order
    assert per_order["publishes"] >= 4, per_order
