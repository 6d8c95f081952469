"""`orderbus soak`: many orders through the whole system while replicas are killed at random.

Starts `orderbus up` with two replicas of every subscriber, places N orders, SIGKILLs a random
replica now and then (`up` restarts it), waits for every service to catch up, and prints, per
service: orders sent, orders processed, deliveries the inbox turned into no-ops, dead letters.
A benchmark of robustness, not a test: it is not part of the default test run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bus import BusSettings
from bus.dead_letters import open_store
from contracts import ORDER_CREATED
from orderbus.progress import Progress
from services.runtime.settings import SUBSCRIBERS


def pid_of_port(port: int) -> int | None:
    """The pid of the `orderbus run ... --port PORT` process, if one runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"orderbus.cli" in argv and b"run" in argv and str(port).encode() in argv:
            return int(entry.name)
    return None


def start_system(backend: str, data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    replicas = ",".join(f"{s}=2" for s in SUBSCRIBERS)
    env = os.environ | {
        "ORDERBUS_DATA_DIR": str(data_dir),
        "ORDERBUS_RATE_LIMIT_PER_MINUTE": "0",
        "ORDERBUS_RATE_LIMIT_PER_CLIENT_PER_MINUTE": "0",
    }
    command = ["up", "--json", "--backend", backend, "--replicas", replicas]
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "orderbus.cli", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=(data_dir / "soak.log").open("w"),
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:  # up's one JSON line, once every instance is ready
        if line.startswith("{"):
            instances = json.loads(line)["instances"]
            return process, {i["instance"]: i["url"] for i in instances}
    raise RuntimeError(f"orderbus up did not start; see {data_dir / 'soak.log'}")


async def soak(backend: str, orders: int, kills: int, concurrency: int, data_dir: Path) -> str:
    process, urls = start_system(backend, data_dir)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            sent: list[str] = []
            gate = asyncio.Semaphore(concurrency)
            placing = Progress("soak: orders placed", orders)
            killed: list[str] = []

            async def place(n: int) -> None:
                body = {"customer_id": f"soak{n % 97}", "items": [{"sku": "MS-002", "quantity": 1}]}
                async with gate:
                    response = await client.post(f"{urls['order-1']}/orders", json=body)
                if response.status_code == 202:
                    sent.append(response.json()["order_id"])
                placing.update(len(sent), f"({len(killed)} replicas killed)")

            async def killer() -> None:
                victims = [i for i in urls if i.split("-")[0] in SUBSCRIBERS]
                for _ in range(kills):
                    await asyncio.sleep(random.uniform(1, 4))  # noqa: S311
                    victim = random.choice(victims)  # noqa: S311
                    pid = pid_of_port(int(urls[victim].rsplit(":", 1)[1]))
                    if pid is not None:
                        os.kill(pid, signal.SIGKILL)
                        killed.append(victim)

            started = time.monotonic()
            killing = asyncio.create_task(killer())
            await asyncio.gather(*(place(n) for n in range(orders)))
            await killing
            placing.done()
            rows = await _wait_for_all(client, urls, set(sent), within_s=600)
            elapsed = time.monotonic() - started
        dead = await _dead_letters(backend)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    return _table(backend, orders, len(sent), killed, rows, dead, elapsed)


async def _wait_for_all(
    client: httpx.AsyncClient, urls: dict[str, str], sent: set[str], within_s: float
) -> dict[str, list[dict[str, Any]]]:
    deadline = time.monotonic() + within_s
    rows: dict[str, list[dict[str, Any]]] = {}
    for service in SUBSCRIBERS:
        handled = Progress(f"soak: {service} handled", len(sent))
        while True:
            with contextlib.suppress(httpx.HTTPError):  # it is being restarted: ask again
                rows[service] = [
                    r
                    for r in await _all_processed(client, urls[f"{service}-1"])
                    if r["order_id"] in sent and r["type"] == ORDER_CREATED
                ]
            seen = {r["order_id"] for r in rows.get(service, [])} & sent
            handled.update(len(seen))
            if seen >= sent:
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        handled.done()
    return rows


async def _all_processed(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        response = await client.get(f"{url}/processed", params={"limit": 1000, "offset": offset})
        response.raise_for_status()
        page: list[dict[str, Any]] = response.json()["processed"]
        offset += len(page)
        # Newest first: rows processed while paging push the others down and repeat them on
        # the next page; keyed by event id, each counts once.
        found |= {row["event_id"]: row for row in page}
        if len(page) < 1000:
            return list(found.values())


async def _dead_letters(backend: str) -> dict[str, int]:
    if backend == "memory":
        return dict.fromkeys(SUBSCRIBERS, 0)
    store = open_store(BusSettings(backend=backend))
    return {service: len(await store.list(service)) for service in SUBSCRIBERS}


def _table(
    backend: str,
    orders: int,
    sent: int,
    killed: list[str],
    rows: dict[str, list[dict[str, Any]]],
    dead: dict[str, int],
    elapsed: float,
) -> str:
    lines = [
        f"soak on {backend}: {orders} orders, {sent} accepted, {len(killed)} replicas killed "
        f"({', '.join(killed) or 'none'}), {elapsed:.0f}s",
        f"{'service':<13} {'sent':>6} {'processed':>9} {'duplicates suppressed':>21} "
        f"{'dead-lettered':>13}",
    ]
    for service in SUBSCRIBERS:
        processed = {r["order_id"] for r in rows.get(service, [])}
        duplicates = sum(r["deliveries"] - 1 for r in rows.get(service, []))
        lines.append(
            f"{service:<13} {sent:>6} {len(processed):>9} {duplicates:>21} {dead[service]:>13}"
        )
    return "\n".join(lines)
