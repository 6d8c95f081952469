"""Stopping always ends: every process of `orderbus up` exits within its shutdown deadline,
while events flood in, while a handler is stuck, on a second signal, and when the
supervisor itself is killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis
import websockets

from contracts import INSTANCE_ACTIVITY, CloudEvent
from contracts.live import INSTANCE_ACTIVITY_SCHEMA
from orderbus.soak import pid_of_port
from services.runtime.activity import Activity
from services.runtime.shutdown import EXIT_OVERRAN
from tests.e2e.system import ADMIN_TOKEN, System, orderbus_up, remove_system_topology
from tests.polling import eventually

pytestmark = pytest.mark.timeout(300)

DEADLINE_S = 8
"""Each process's ORDERBUS_SHUTDOWN_TIMEOUT_S in these tests."""
SLACK_S = 4.0
"""Beyond the deadline: the interpreter's exit, and a loaded machine."""
GROUPS = ["inventory", "billing", "notification"]
STOPS = 3


def _children(system: System) -> list[int]:
    ports = [int(url.rsplit(":", 1)[1]) for url in system.urls.values()]
    return [pid for port in ports if (pid := pid_of_port(port)) is not None]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pids: list[int], within_s: float) -> list[int]:
    """The pids still alive after `within_s` (polling /proc: no process of ours to wait on)."""
    deadline = time.monotonic() + within_s
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _activity_event() -> bytes:
    report = Activity("billing", "billing-9", "http://127.0.0.1:9", "redis-streams").report({})
    event = CloudEvent.of(
        report,
        type=INSTANCE_ACTIVITY,
        source="/services/billing/billing-9",
        dataschema=INSTANCE_ACTIVITY_SCHEMA,
    )
    return event.to_json()


async def _flood(url: str, stop: asyncio.Event) -> int:
    """`instance_activity` entries as fast as one pipelined client writes them."""
    client = redis.from_url(url)
    body = _activity_event()
    sent = 0
    try:
        while not stop.is_set():
            pipe = client.pipeline(transaction=False)
            for _ in range(100):
                pipe.xadd(INSTANCE_ACTIVITY, {"__data__": body})
            await pipe.execute()
            sent += 100
    finally:
        await client.aclose()
    return sent


@pytest.mark.parametrize("backend", ["redis-streams"])
async def test_every_process_exits_within_the_deadline_while_events_flood_in(
    backend: str, backend_url: str, tmp_path: Path
) -> None:
    """As seen once by a user: Ctrl-C while the dashboard is open and `instance_activity`
    floods in. Each round: a dashboard client listening to the activity feed (so the
    notification service asks the broker for backlogs), a flood of activity events, then
    SIGINT to `orderbus up`; every process must be gone within the deadline."""
    await remove_system_topology(backend, backend_url, GROUPS)
    env = {"ORDERBUS_ACTIVITY": "true", "ORDERBUS_SHUTDOWN_TIMEOUT_S": str(DEADLINE_S)}
    for n in range(STOPS):
        data_dir = tmp_path / f"round-{n}"
        data_dir.mkdir()
        with orderbus_up(backend, backend_url, data_dir, env=env) as system:
            children = _children(system)
            assert len(children) == 4
            ws = system.url("notification-1").replace("http://", "ws://") + "/ws"
            async with websockets.connect(ws) as dashboard:
                await dashboard.recv()  # hello
                await dashboard.send(json.dumps({"type": "auth", "token": ADMIN_TOKEN}))
                await dashboard.send(json.dumps({"type": "feeds", "feeds": ["activity"]}))
                stop = asyncio.Event()
                flooding = asyncio.create_task(_flood(backend_url, stop))

                async def flooded() -> bool | None:
                    message = json.loads(await dashboard.recv())
                    return True if message["type"] == "activity" else None

                await eventually(flooded, within_s=30)
                system.process.send_signal(signal.SIGINT)
                left = await asyncio.to_thread(
                    _wait_gone, [system.process.pid, *children], DEADLINE_S + SLACK_S
                )
                stop.set()
                assert await flooding > 0
            assert not left, f"round {n}: still running {left}; log:\n{_tail(system)}"
            assert system.process.wait() == 0, _tail(system)
    await remove_system_topology(backend, backend_url, GROUPS)


@contextmanager
def _billing_locked(data_dir: Path) -> Iterator[None]:
    """Hold billing's SQLite write lock, as another process's long transaction would: its
    handler then waits for the lock (`sqlite_inline.LOCK_WAIT_S`, 30 s)."""
    connection = sqlite3.connect(data_dir / "billing.db", isolation_level=None, timeout=5)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
    finally:
        connection.rollback()
        connection.close()


async def _order_stuck_in_billing(system: System) -> None:
    """Place an order and wait until inventory handled it: billing, woken by the same
    publish, is then inside its handler, waiting for the lock."""
    async with httpx.AsyncClient(timeout=10) as client:
        body = {"customer_id": "stuck", "items": [{"sku": "KB-001", "quantity": 1}]}
        placed = await client.post(f"{system.url('order-1')}/orders", json=body)
        order_id = placed.json()["order_id"]

        async def inventory_handled() -> bool | None:
            page = await client.get(
                f"{system.url('inventory-1')}/processed", params={"order_id": order_id}
            )
            return True if page.json()["processed"] else None

        await eventually(inventory_handled, within_s=30)


async def test_a_stuck_handler_cannot_hold_the_process_past_its_deadline(
    tmp_path: Path,
) -> None:
    """On the embedded bus, closing waits for the handler in flight; this one waits 30 s for
    a database lock, past the 8 s deadline: the process logs what is pending, with the
    handler's frames, and exits with EXIT_OVERRAN."""
    env = {"ORDERBUS_SHUTDOWN_TIMEOUT_S": str(DEADLINE_S)}
    with (
        orderbus_up("memory", "memory://default", tmp_path, env=env) as system,
        _billing_locked(tmp_path),
    ):
        await _order_stuck_in_billing(system)
        began = time.monotonic()
        system.process.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(system.process.wait, DEADLINE_S + SLACK_S)
        took = time.monotonic() - began
    log = system.log.read_text()
    assert code == EXIT_OVERRAN, log[-4000:]
    assert took >= DEADLINE_S - 0.5  # it did wait for the handler, up to the deadline
    assert "shutdown overran its 8 s deadline" in log
    assert "services/runtime/inbox.py" in log  # where the stuck handler is suspended


async def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    env = {"ORDERBUS_SHUTDOWN_TIMEOUT_S": "60"}
    with (
        orderbus_up("memory", "memory://default", tmp_path, env=env) as system,
        _billing_locked(tmp_path),
    ):
        await _order_stuck_in_billing(system)
        system.process.send_signal(signal.SIGINT)
        await eventually(lambda: _said(system, "Shutting down"), within_s=10)
        system.process.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(system.process.wait, SLACK_S)
    assert code == 128 + signal.SIGINT, system.log.read_text()[-4000:]
    assert "second SIGINT, exiting now" in system.log.read_text()


@pytest.mark.parametrize("backend", ["redis-streams"])
async def test_children_end_with_a_killed_supervisor(
    backend: str, backend_url: str, tmp_path: Path
) -> None:
    await remove_system_topology(backend, backend_url, GROUPS)
    env = {"ORDERBUS_SHUTDOWN_TIMEOUT_S": str(DEADLINE_S)}
    with orderbus_up(backend, backend_url, tmp_path, env=env) as system:
        children = _children(system)
        assert len(children) == 4
        system.process.kill()  # SIGKILL: the supervisor stops nobody
        system.process.wait()
        left = await asyncio.to_thread(_wait_gone, children, DEADLINE_S + SLACK_S)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert not left, f"orphans after the supervisor died: {left}"
    await remove_system_topology(backend, backend_url, GROUPS)


async def _said(system: System, text: str) -> bool | None:
    return True if text in system.log.read_text() else None


def _tail(system: System) -> str:
    return system.log.read_text()[-4000:]
