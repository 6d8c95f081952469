"""Sections 4-5: `POST /orders` through the real order service, and the whole system.

Both start the real processes (`orderbus run order`, `orderbus up`) on a fresh data
directory and drive them with the load generator over loopback HTTP. The system run uses
the contract's physical names (`order_created`, groups `inventory`, `billing`,
`notification`) and deletes them on the broker before and after: point the benchmark at a
broker of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bus import names
from contracts import ORDER_CONFIRMED, ORDER_CREATED, ORDER_REJECTED
from orderbus.bench.load import ORDER_BODY, LoadResult, load
from orderbus.bench.raw import RAW_CLIENTS
from orderbus.soak import pid_of_port
from orderbus.supervisor import port_free
from services.runtime.settings import SUBSCRIBERS

CONNECTIONS = 16
DECISIONS = (ORDER_CONFIRMED, ORDER_REJECTED)


def free_ports(count: int, start: int = 18_100) -> list[int]:
    found = [p for p in range(start, start + 500) if port_free("127.0.0.1", p)]
    if len(found) < count:
        raise RuntimeError("no free ports for the services under test")
    return found[:count]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _env(backend: str, url: str, data_dir: Path, ports: list[int]) -> dict[str, str]:
    return os.environ | {
        "BUS_BACKEND": backend,
        "BUS_URL": url,
        "ORDERBUS_DATA_DIR": str(data_dir),
        "ORDERBUS_RATE_LIMIT_PER_MINUTE": "0",
        "ORDERBUS_RATE_LIMIT_PER_CLIENT_PER_MINUTE": "0",
        **{
            f"{service.upper()}_PORT": str(port)
            for service, port in zip(("order", *SUBSCRIBERS), ports, strict=False)
        },
    }


async def reset_topology(backend: str, url: str) -> None:
    """Delete `order_created` and the services' groups and dead letters on the broker."""
    raw = RAW_CLIENTS[backend](url)
    await raw.open()
    try:
        await raw.remove([ORDER_CREATED, *map(names.dead_letters, SUBSCRIBERS)], SUBSCRIBERS)
    finally:
        await raw.close()


async def _wait_ready(base: str, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{base}/ready")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{base} not ready within {within_s:.0f}s")
            await asyncio.sleep(0.1)  # polling HTTP: there is no event to await


@contextlib.contextmanager
def _stopping(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- 4. POST /orders ----------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRound:
    orders: LoadResult
    health: LoadResult


async def order_service_rounds(
    backend: str, url: str, data_dir: Path, runs: int, seconds: float
) -> tuple[list[HttpRound], float]:
    """`runs` interleaved rounds of `POST /orders` and of `GET /health` (the baseline: the
    same process and framework doing no work), then the service's resident memory."""
    await reset_topology(backend, url)
    (port,) = free_ports(1)
    log = (data_dir / "order.log").open("w")
    # Popen, not asyncio's: the process is only started here and stopped by signal later.
    process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own CLI
        [sys.executable, "-m", "orderbus.cli", "run", "order", "--port", str(port)],
        env=_env(backend, url, data_dir, [port]) | {"INSTANCE_ID": "bench-order"},
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    rounds = []
    try:
        with _stopping(process):
            await _wait_ready(base)
            await load(f"{base}/orders", "POST", ORDER_BODY, connections=CONNECTIONS, seconds=1)
            for _ in range(runs):
                health = await load(
                    f"{base}/health", "GET", None, connections=CONNECTIONS, seconds=seconds
                )
                orders = await load(
                    f"{base}/orders", "POST", ORDER_BODY, connections=CONNECTIONS, seconds=seconds
                )
                rounds.append(HttpRound(orders, health))
            memory = rss_mib(process.pid)
    finally:
        await reset_topology(backend, url)
    return rounds, memory


# -- 5. the whole system --------------------------------------------------------------------

SYSTEM_CONNECTIONS = 32


@dataclass(frozen=True)
class SystemRound:
    accepted: int
    accepted_per_s: float
    """REST: orders the order service accepted per second while the load ran."""
    post_p99_ms: float
    committed_per_s: float
    """Orders per second from the first request to the last `order_created` commit in the
    slowest subscriber."""
    decided_per_s: float
    """Orders per second from the first request to the end of the saga for the last order:
    notification handling its `order_confirmed` or `order_rejected`."""
    cpu_ms_per_order: dict[str, float]
    """CPU time (user + system, from /proc) per decided order, per process and in `all`."""
    work_per_order: dict[str, float]
    """What the four services did per accepted order, summed: `WORK` from their /metrics,
    and the lines they logged."""


@dataclass(frozen=True)
class SystemResult:
    rounds: list[SystemRound]
    lost: dict[str, int]
    """Per subscriber, and `undecided` for the order service: accepted orders it never
    processed, or never decided (after waiting for it)."""
    rss_mib: dict[str, float]


def _metric(name: str, types: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(map(re.escape, types))
    return re.compile(rf'^{name}\{{[^}}]*type="(?:{alternatives})"[^}}]*\}} (\S+)$')


_CONSUMED = _metric("orderbus_events_consumed_total", (ORDER_CREATED,))
_DECIDED = _metric("orderbus_events_consumed_total", (ORDER_CONFIRMED, ORDER_REJECTED))
WORK: dict[str, re.Pattern[str]] = {
    name: re.compile(rf"^(?:{metrics})\{{[^}}]*\}} (\S+)$")
    for name, metrics in (
        ("database transactions", "orderbus_database_transactions_total"),
        ("database statements", "orderbus_database_statements_total"),
        ("deliveries", "orderbus_events_consumed_total|orderbus_events_duplicate_total"),
        ("publishes", "orderbus_events_published_total"),
    )
}
"""Per-order counts summed over the services' /metrics (the bench's own scrapes, and the
database reads behind their backlog gauges, included)."""
LOG_LINES = "log lines"


async def _metrics(client: httpx.AsyncClient, base: str) -> list[str]:
    return (await client.get(f"{base}/metrics")).text.splitlines()


def _count(lines: list[str], pattern: re.Pattern[str]) -> int:
    return sum(int(float(m.group(1))) for m in map(pattern.match, lines) if m)


async def _work(client: httpx.AsyncClient, bases: list[str], log: Path) -> dict[str, float]:
    """The `WORK` counters summed over `bases`, and the lines in the services' `log`."""
    lines = [line for base in bases for line in await _metrics(client, base)]
    done = {name: float(_count(lines, pattern)) for name, pattern in WORK.items()}
    done[LOG_LINES] = float((await asyncio.to_thread(log.read_bytes)).count(b"\n"))
    return done


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _orders(client: httpx.AsyncClient, base: str) -> dict[str, str]:
    """Every order's id and status."""
    found: dict[str, str] = {}
    while True:
        page = (
            await client.get(f"{base}/orders", params={"limit": 200, "offset": len(found)})
        ).json()
        found |= {o["order_id"]: o["status"] for o in page["orders"]}
        if len(page["orders"]) < 200:
            return found


async def _processed_ids(client: httpx.AsyncClient, base: str, types: tuple[str, ...]) -> set[str]:
    """The orders of which `base` processed an event of one of `types`."""
    found: list[dict[str, str]] = []
    while True:
        page = (
            await client.get(f"{base}/processed", params={"limit": 1000, "offset": len(found)})
        ).json()["processed"]
        found += page
        if len(page) < 1000:
            return {row["order_id"] for row in found if row["type"] in types}


def _processes(backend: str, supervisor: int, ports: list[int]) -> dict[str, int]:
    """The pid of each service: all in `orderbus up` itself on memory."""
    if backend == "memory":
        return {"all": supervisor}
    found: dict[str, int] = {
        service: pid
        for service, port in zip(("order", *SUBSCRIBERS), ports, strict=True)
        if (pid := pid_of_port(port)) is not None
    }
    if len(found) != len(ports):
        raise RuntimeError(f"found the processes of {sorted(found)} only")
    return found


async def _wait_drained(
    client: httpx.AsyncClient,
    order: str,
    subscribers: list[str],
    target: int,
    stall_s: float,
) -> tuple[float, float]:
    """Wait until every subscriber has committed `target` orders' `order_created` and
    notification their decisions, however long the backlog takes, unless nothing moves for
    `stall_s`. Returns when the first and when the second was seen."""
    notification = subscribers[-1]
    committed_at: float | None = None
    progress, progressed = None, time.perf_counter()
    counts: list[int] = []
    while True:
        # A scrape renders the whole registry, CPU the services spend in the measured window:
        # one per service and poll, and only notification's once all have committed.
        if committed_at is None:
            scraped = [await _metrics(client, base) for base in subscribers]
            counts = [_count(lines, _CONSUMED) for lines in scraped]
            told = scraped[-1]
        else:
            told = await _metrics(client, notification)
        decided = _count(told, _DECIDED)
        now = time.perf_counter()
        if committed_at is None and min(counts) >= target:
            committed_at = now
        if committed_at is not None and decided >= target:
            return committed_at, now
        if (counts, decided) != progress:
            progress, progressed = (counts, decided), now
        elif now - progressed > stall_s:
            print(  # progress lines go to stderr, as the runner's
                f"bench: no progress for {stall_s:.0f}s at {counts} order_created, "
                f"{decided} decided, of {target} orders",
                file=sys.stderr,
            )
            return committed_at or now, now
        await asyncio.sleep(0.2)  # polling HTTP: no event to await


async def whole_system(
    backend: str, url: str, data_dir: Path, runs: int, seconds: float, stall_s: float = 30
) -> SystemResult:
    """`runs` rounds of load, each waited out until the saga has ended for every order
    accepted (however long the backlog takes), unless nothing progresses for `stall_s`: then
    what was never handled counts as lost."""
    if backend in RAW_CLIENTS:
        await reset_topology(backend, url)
    ports = free_ports(4)
    order, *subscribers = (f"http://127.0.0.1:{p}" for p in ports)
    log_path = data_dir / "system.log"
    log = log_path.open("w")
    # Popen, not asyncio's: the process is only started here and stopped by signal later.
    process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own CLI
        [sys.executable, "-m", "orderbus.cli", "up", "--backend", backend],
        env=_env(backend, url, data_dir, ports),
        stdout=log,
        stderr=log,
    )
    rounds = []
    try:
        with _stopping(process):
            for base in (order, *subscribers):
                await _wait_ready(base, within_s=90)
            pids = _processes(backend, process.pid, ports)
            async with httpx.AsyncClient(timeout=30) as client:
                done = 0
                for _ in range(runs):
                    work = await _work(client, [order, *subscribers], log_path)
                    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
                    began = time.perf_counter()
                    rest = await load(
                        f"{order}/orders",
                        "POST",
                        ORDER_BODY,
                        connections=SYSTEM_CONNECTIONS,
                        seconds=seconds,
                    )
                    total = (await client.get(f"{order}/orders", params={"limit": 1})).json()
                    accepted = int(total["total"]) - done
                    done += accepted
                    committed, decided = await _wait_drained(
                        client, order, subscribers, done, stall_s
                    )
                    spent = {name: cpu_seconds(pid) - cpu[name] for name, pid in pids.items()}
                    spent["all"] = sum(spent.values()) if backend != "memory" else spent["all"]
                    worked = await _work(client, [order, *subscribers], log_path)
                    rounds.append(
                        SystemRound(
                            accepted,
                            rest.rate,
                            rest.p99_ms,
                            accepted / (committed - began),
                            accepted / (decided - began),
                            {name: s * 1_000 / max(1, accepted) for name, s in spent.items()},
                            {n: (worked[n] - work[n]) / max(1, accepted) for n in worked},
                        )
                    )
                statuses = await _orders(client, order)
                placed = set(statuses)
                lost: dict[str, int] = {
                    service: len(placed - await _processed_ids(client, base, (ORDER_CREATED,)))
                    for service, base in zip(SUBSCRIBERS, subscribers, strict=True)
                }
                told = await _processed_ids(client, subscribers[-1], DECISIONS)
                lost["undecided"] = sum(1 for s in statuses.values() if s == "pending")
                lost["decision not handled by notification"] = len(placed - told)
            memory = {name: rss_mib(pid) for name, pid in pids.items()}
    finally:
        if backend in RAW_CLIENTS:
            await reset_topology(backend, url)
    return SystemResult(rounds, lost, memory)
