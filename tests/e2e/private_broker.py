"""A broker of the test's own, on a free port, that the test may kill and restart.

The shared loopback brokers are never stopped; a test that needs a broker to die starts one
of these. Its data directory outlives a restart, as a real broker's disk would.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from tests.brokers import free_port, wait_for_port


class PrivateBroker(ABC):
    def __init__(self, password: str) -> None:
        self.password = password
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="orderbus-broker-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def command(self) -> list[str]: ...

    def start(self) -> None:
        log = (self.dir / "broker.log").open("ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis(PrivateBroker):
    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            self.password,
            "--dir",
            str(self.dir),
            "--save",
            "",
            # Every write on disk before the reply: a kill -9 loses nothing acknowledged.
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]


class PrivateNats(PrivateBroker):
    @property
    def url(self) -> str:
        return f"nats://orderbus:{self.password}@127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            shutil.which("nats-server") or "/usr/sbin/nats-server",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "--user",
            "orderbus",
            "--pass",
            self.password,
            "-js",
            "-sd",
            str(self.dir),
        ]


PRIVATE: dict[str, type[PrivateBroker]] = {"redis-streams": PrivateRedis, "nats": PrivateNats}
