"""A broker of the test's own, on a free port, that the test may kill and restart.

The shared loopback brokers are never stopped; a test that needs a broker to die starts one
of these. Its data directory outlives a restart, as a real broker's disk would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path

import pytest

from tests.broker_containers import RECIPES, BrokerContainer
from tests.brokers import (
    brokers_required,
    containers_only,
    docker_has,
    free_port,
    image,
    missing_image,
    port_open,
    wait_for_port,
)


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

    def environment(self) -> dict[str, str] | None:
        """Extra environment for the broker process; None: this process's own."""
        return None

    user: str | None = None
    """Run the broker as this user (needs root); None: as ourselves."""

    def start(self) -> None:
        log = (self.dir / "broker.log").open("ab")
        extra = self.environment()
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if extra is None else os.environ | extra,
            user=self.user,
            group=self.user,
            # Its own process group, so kill() takes the whole broker, launcher scripts and all.
            start_new_session=True,
        )
        wait_for_port(self.port, self.process, timeout=60)

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        # The launcher may exit before the broker under it has let go of the port.
        deadline = time.monotonic() + 10
        while port_open("127.0.0.1", self.port, timeout=0.2):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the killed broker still listens on {self.port}")
            time.sleep(0.05)

    def pause(self) -> None:
        """Freeze the broker (every process of it stopped; its connections stay open)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def unpause(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

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


class PrivateRabbit(PrivateBroker):
    """A RabbitMQ node of its own: own node name, ports, Mnesia directory and (no) plugins.

    The node runs as the `rabbitmq` user (its Erlang cookie is there), so only root or that
    user can start one; anyone else gets a skip with the reason. It is started without
    Debian's `su` wrapper, which would put the node in a session of its own, out of reach of
    kill().
    """

    USER = "rabbitmq"
    SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"

    def __init__(self, password: str) -> None:
        super().__init__(password)
        self.dist_port = free_port()
        self.node = f"orderbus-{self.port}@localhost"
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"default_user = orderbus\ndefault_pass = {self.password}\n"
        )
        if not os.path.exists(self.SCRIPT):
            self._refuse(f"no RabbitMQ server at {self.SCRIPT}")
        if os.geteuid() == 0:
            self.user = self.USER
            shutil.chown(self.dir, self.USER, self.USER)
            for path in self.dir.iterdir():
                shutil.chown(path, self.USER, self.USER)
        elif os.environ.get("USER") != self.USER:
            self._refuse("a private RabbitMQ node must run as root or rabbitmq")

    def _refuse(self, reason: str) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        if brokers_required():
            pytest.fail(f"ORDERBUS_REQUIRE_BROKERS=1 but {reason}")
        pytest.skip(reason)

    @property
    def url(self) -> str:
        return f"amqp://orderbus:{self.password}@127.0.0.1:{self.port}/"

    def command(self) -> list[str]:
        return [self.SCRIPT]

    def environment(self) -> dict[str, str]:
        return {
            "HOME": str(Path("~" + self.USER).expanduser()),  # its Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_PID_FILE": str(self.dir / "node.pid"),
        }


PRIVATE: dict[str, type[PrivateBroker]] = {
    "redis-streams": PrivateRedis,
    "rabbitmq": PrivateRabbit,
    "nats": PrivateNats,
}


def own_broker(backend: str, password: str) -> PrivateBroker | BrokerContainer:
    """A broker of the test's own that it may kill, restart or freeze: a container with
    `ORDERBUS_BROKERS=containers` (skipped, or failed under ORDERBUS_REQUIRE_BROKERS=1,
    without its image), a process otherwise. Not started yet."""
    if containers_only():
        wanted = image(RECIPES[backend].kind)
        if not docker_has(wanted):
            if brokers_required():
                pytest.fail(missing_image(wanted))
            pytest.skip(missing_image(wanted))
        return BrokerContainer(backend, password)
    return PRIVATE[backend](password)
