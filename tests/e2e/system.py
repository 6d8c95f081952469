"""Run the whole system as a user does (`orderbus up`) and talk to it over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bus import names
from contracts import INSTANCE_ACTIVITY, NOTIFICATION_PUSHED, TOPICS
from services.runtime.settings import SERVICES
from tests.brokers import free_port
from tests.integration.native import remove_topology


@dataclass(frozen=True)
class System:
    urls: dict[str, str]
    """instance id -> base URL, as `orderbus up` printed them."""
    process: subprocess.Popen[str]
    log: Path

    def url(self, instance: str) -> str:
        return self.urls[instance]

    def instances(self, service: str) -> list[str]:
        return sorted(i for i in self.urls if i.startswith(f"{service}-"))


def read_table(process: subprocess.Popen[str], log: Path, within_s: float) -> dict[str, str]:
    """Parse the table `orderbus up` prints once every instance is ready."""
    assert process.stdout is not None
    deadline = time.monotonic() + within_s
    urls: dict[str, str] = {}
    for line in process.stdout:
        if line.startswith("backend:"):
            return urls
        columns = line.split()
        if len(columns) == 3 and columns[2].startswith("http://"):
            urls[columns[1]] = columns[2]
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"orderbus up printed no table; its log:\n{log.read_text()[-4000:]}")


ADMIN_TOKEN = "e2e-admin-token-0123456789"
"""Every system's admin token unless the environment has one: a test shows it (WebSocket
`auth`, admin calls)."""


@contextmanager
def orderbus_up(
    backend: str, url: str, data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[System]:
    """`orderbus up` with `args`, its variables and `env`; SIGINT (and waited for) at the end."""
    ports = {
        f"{s.upper()}_PORT": str(free_port())
        for s in ("order", "inventory", "billing", "notification")
    }
    variables = (
        os.environ
        | ports
        | {
            "BUS_BACKEND": backend,
            "BUS_URL": url,
            "ORDERBUS_DATA_DIR": str(data_dir),
            "ORDERBUS_ADMIN_TOKEN": os.environ.get("ORDERBUS_ADMIN_TOKEN", ADMIN_TOKEN),
            "PYTHONUNBUFFERED": "1",
            # These tests place orders as fast as they can, from a handful of customer ids.
            "ORDERBUS_RATE_LIMIT_PER_MINUTE": "0",
            "ORDERBUS_RATE_LIMIT_PER_CLIENT_PER_MINUTE": "0",
            # The dashboard's feed only where a test asks for it: on Tansu, a test broker that
            # never expires sessions, its heartbeats made a later run's group joins wait
            # (see the lead's note); the browser tests turn it on.
            "ORDERBUS_ACTIVITY": os.environ.get("ORDERBUS_ACTIVITY", "false"),
        }
        | (env or {})
    )
    variables.pop("INSTANCE_ID", None)
    log = data_dir / "orderbus-up.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", "--backend", backend, *args],
            env=variables,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        yield System(read_table(process, log, within_s=120), process, log)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


LIVE_TOPICS = [NOTIFICATION_PUSHED, INSTANCE_ACTIVITY]
"""Topics each notification instance receives under a group of its own."""


async def remove_system_topology(backend: str, url: str, groups: list[str]) -> None:
    """Delete what `orderbus up` declares on the broker: every business topic with every
    service's group (and `groups`), and the live topics with the notification instances' own
    groups (up to four replicas)."""
    await remove_topology(backend, url, TOPICS, sorted({*groups, *SERVICES}))
    for topic in LIVE_TOPICS:
        live_groups = [names.instance_group(f"notification-{n}", topic) for n in range(1, 5)]
        await remove_topology(backend, url, [topic], live_groups)
