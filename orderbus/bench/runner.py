"""Runs the sections for the chosen backends and gathers the figures.

Bus and baseline runs alternate (bus first on even runs, baseline first on odd ones), so a
neighbour's load on this shared machine falls on both sides alike.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bus.registry import backend_info
from orderbus.bench import broker, system
from orderbus.bench.figures import Figure, median
from orderbus.bench.load import tool
from orderbus.bench.raw import RAW_CLIENTS
from orderbus.progress import Progress

SECTIONS = ("publish", "consume", "latency", "http", "system")
T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    runs: int
    publish_count: int
    consume_count: int
    latency_seconds: float
    ladder: tuple[int, ...]
    """Rates tried for "the highest rate sustained", stopping at the first both sides miss."""
    http_seconds: float
    system_seconds: float

    @classmethod
    def full(cls) -> Plan:
        return cls(3, 3_000, 5_000, 2.0, (1_000, 2_000, 4_000, 8_000, 16_000), 10.0, 10.0)

    @classmethod
    def quick(cls) -> Plan:
        return cls(3, 300, 500, 1.0, (1_000,), 1.0, 2.0)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _paired(
    runs: int, bus: Callable[[], Awaitable[T]], raw: Callable[[], Awaitable[T]]
) -> tuple[list[T], list[T]]:
    bus_runs: list[T] = []
    raw_runs: list[T] = []
    rounds = Progress("bench:   pairs run", runs)
    for n in range(runs):
        rounds.update(n)
        if n % 2 == 0:
            bus_runs.append(await bus())
            raw_runs.append(await raw())
        else:
            raw_runs.append(await raw())
            bus_runs.append(await bus())
    rounds.update(runs)
    rounds.done()
    return bus_runs, raw_runs


def _figure(
    section: str,
    backend: str,
    metric: str,
    unit: str,
    bus: list[float],
    raw: list[float] | None,
    baseline: str,
    **extra: Any,
) -> Figure:
    return Figure(
        section=section,
        backend=backend,
        metric=metric,
        unit=unit,
        value=median(bus),
        baseline=None if raw is None else median(raw),
        baseline_name=baseline,
        runs=bus,
        baseline_runs=raw or [],
        **extra,
    )


async def broker_sections(backend: str, url: str, plan: Plan, sections: set[str]) -> list[Figure]:
    figures: list[Figure] = []
    raw_name = {
        "redis-streams": "redis-py",
        "redis-pubsub": "redis-py",
        "rabbitmq": "aio-pika",
        "kafka": "aiokafka",
        "nats": "nats-py",
    }[backend]
    async with broker.scope(backend, url) as s:
        if "publish" in sections:
            for batched, metric in (
                (False, "publish awaited"),
                (True, f"publish {broker.WINDOW} in flight"),
            ):
                _say(f"bench: {backend}: {metric}")
                bus, raw = await _paired(
                    plan.runs,
                    partial(broker.bus_publish, s, plan.publish_count, batched),
                    partial(broker.raw_publish, s, plan.publish_count, batched),
                )
                figures.append(_figure("publish", backend, metric, "msg/s", bus, raw, raw_name))
        if "consume" in sections:
            _say(f"bench: {backend}: consume")
            bus, raw = await _paired(
                plan.runs,
                lambda: broker.bus_consume(s, plan.consume_count),
                lambda: broker.raw_consume(s, plan.consume_count),
            )
            figures.append(_figure("consume", backend, "consume", "msg/s", bus, raw, raw_name))
        if "latency" in sections:
            figures += await _latency(s, backend, plan, raw_name)
    return figures


async def _latency(s: broker.Scope, backend: str, plan: Plan, raw_name: str) -> list[Figure]:
    by_rate: dict[int, tuple[list[broker.LatencyRun], list[broker.LatencyRun]]] = {}
    for rate in plan.ladder:
        _say(f"bench: {backend}: latency at {rate}/s")
        by_rate[rate] = await _paired(
            plan.runs,
            partial(broker.bus_latency, s, rate, plan.latency_seconds),
            partial(broker.raw_latency, s, rate, plan.latency_seconds),
        )
        bus, raw = by_rate[rate]
        if not _sustained(bus) and not _sustained(raw):
            break
    figures = []

    def percentiles(rate: int, note: str = "") -> None:
        bus, raw = by_rate[rate]
        for q in ("p50", "p95", "p99"):
            figures.append(
                _figure(
                    "latency",
                    backend,
                    f"{q} at {rate:,}/s",
                    "ms",
                    [getattr(r, f"{q}_ms") for r in bus],
                    [getattr(r, f"{q}_ms") for r in raw],
                    raw_name,
                    higher_is_better=False,
                    note=note,
                )
            )

    percentiles(plan.ladder[0])
    if len(plan.ladder) > 1:
        bus_max = max((r for r, (b, _) in by_rate.items() if _sustained(b)), default=0)
        raw_max = max((r for r, (_, w) in by_rate.items() if _sustained(w)), default=0)
        figures.append(
            Figure(
                "latency",
                backend,
                "highest rate sustained",
                "msg/s",
                bus_max,
                raw_max,
                raw_name,
                note=f"ladder {', '.join(map(str, plan.ladder))}/s",
            )
        )
        if bus_max and bus_max != plan.ladder[0]:
            percentiles(bus_max, note="baseline at the same rate")
    return figures


def _sustained(runs: list[broker.LatencyRun]) -> bool:
    return sum(r.sustained for r in runs) * 2 > len(runs)


async def http_section(backend: str, url: str, plan: Plan, data_dir: Path) -> list[Figure]:
    _say(f"bench: POST /orders on {backend} with {tool()}, {system.CONNECTIONS} connections")
    rounds, memory = await system.order_service_rounds(
        backend, url, data_dir, plan.runs, plan.http_seconds
    )
    base = f"GET /health, same process ({tool()})"
    orders = [r.orders for r in rounds]
    health = [r.health for r in rounds]
    return [
        _figure(
            "http",
            backend,
            "POST /orders",
            "req/s",
            [r.rate for r in orders],
            [r.rate for r in health],
            base,
        ),
        _figure(
            "http",
            backend,
            "POST /orders p50",
            "ms",
            [r.p50_ms for r in orders],
            [r.p50_ms for r in health],
            base,
            higher_is_better=False,
        ),
        _figure(
            "http",
            backend,
            "POST /orders p99",
            "ms",
            [r.p99_ms for r in orders],
            [r.p99_ms for r in health],
            base,
            higher_is_better=False,
        ),
        _figure(
            "http",
            backend,
            "failed requests",
            "req",
            [float(sum(r.failures for r in orders))],
            None,
            "-",
        ),
        _figure("http", backend, "order service RSS", "MiB", [memory], None, "-"),
    ]


async def system_section(backend: str, url: str, plan: Plan, data_dir: Path) -> list[Figure]:
    _say(f"bench: whole system on {backend} with {tool()}, {system.SYSTEM_CONNECTIONS} connections")
    result = await system.whole_system(backend, url, data_dir, plan.runs, plan.system_seconds)
    rounds = result.rounds
    accepted = [r.accepted_per_s for r in rounds]
    same_run = "POST /orders accepted, same run"
    figures = [
        _figure(
            "system",
            backend,
            "orders decided (saga ended)",
            "orders/s",
            [r.decided_per_s for r in rounds],
            accepted,
            same_run,
        ),
        _figure(
            "system",
            backend,
            "orders committed by all 3",
            "orders/s",
            [r.committed_per_s for r in rounds],
            accepted,
            same_run,
        ),
        _figure(
            "system",
            backend,
            f"POST p99 at {system.SYSTEM_CONNECTIONS} connections",
            "ms",
            [r.post_p99_ms for r in rounds],
            None,
            "-",
            higher_is_better=False,
        ),
    ]
    figures += [
        _figure(
            "system",
            backend,
            f"CPU per order ({process})",
            "ms",
            [r.cpu_ms_per_order[process] for r in rounds],
            None,
            "user + system, from /proc",
            higher_is_better=False,
        )
        for process in rounds[0].cpu_ms_per_order
    ]
    figures += [
        _figure(
            "system",
            backend,
            what,
            "per order",
            [r.work_per_order[what] for r in rounds],
            None,
            "all services, from /metrics" if what in system.WORK else "all services' output",
            higher_is_better=False,
        )
        for what in rounds[0].work_per_order
    ]
    figures += [
        _figure(
            "system",
            backend,
            f"orders lost ({what})",
            "orders",
            [float(lost)],
            None,
            f"of {sum(r.accepted for r in rounds)} accepted",
        )
        for what, lost in result.lost.items()
    ]
    figures += [
        _figure("system", backend, f"RSS {process}", "MiB", [mib], None, "-")
        for process, mib in result.rss_mib.items()
    ]
    return figures


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024**2, 1),
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
        "load_generator": tool(),
    }


async def run(
    backends: list[str],
    urls: dict[str, str],
    plan: Plan,
    sections: set[str],
    system_backend: str,
) -> list[Figure]:
    figures: list[Figure] = []
    # Sections 1-3 measure each backend; an `http,system` run connects to none of them.
    per_backend = sections & {"publish", "consume", "latency"}
    for backend in backends if per_backend else []:
        if backend not in RAW_CLIENTS:
            raise ValueError(
                f"no raw baseline for {backend!r}: choose from {', '.join(RAW_CLIENTS)}"
            )
        try:
            figures += await broker_sections(backend, urls[backend], plan, per_backend)
        except Exception as exc:  # noqa: BLE001 - one broker failing must not lose the others
            _say(f"bench: {backend}: failed: {type(exc).__name__}: {exc}")
            figures.append(Figure("error", backend, "failed", "-", 0.0, None, type(exc).__name__))
    with tempfile.TemporaryDirectory(prefix="orderbus-bench-") as tmp:
        if "http" in sections:
            data = Path(tmp, "http")
            data.mkdir()  # noqa: ASYNC240 - a local directory, once
            figures += await http_section(system_backend, urls[system_backend], plan, data)
        if "system" in sections:
            data = Path(tmp, "system")
            data.mkdir()
            figures += await system_section(system_backend, urls[system_backend], plan, data)
    return figures


def resolve_urls(backends: list[str], given: list[str]) -> dict[str, str]:
    """`--url BACKEND=URL`; else BUS_URL for the BUS_BACKEND; else the backend's default."""
    urls = {b: backend_info(b).default_url for b in backends}
    if (env := os.environ.get("BUS_URL")) and os.environ.get("BUS_BACKEND") in urls:
        urls[os.environ["BUS_BACKEND"]] = env
    for item in given:
        name, sep, url = item.partition("=")
        if not sep or name not in urls:
            raise ValueError(
                f"--url {item.split('=')[0]!r}: expected BACKEND=URL for a chosen backend"
            )
        urls[name] = url
    return urls
