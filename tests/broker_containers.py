"""A broker in a container of the test's own, which the test may kill and restart, freeze or
cut off the network: what a broker process on the host cannot show.

`docker kill` then `docker start` is a broker's crash and restart: the container keeps its
filesystem (Redis's append-only file, NATS's JetStream store, RabbitMQ's Mnesia) and its host
port, fixed when it is created. `pause` freezes every process of the broker (connections stay
open, nothing answers); `disconnect` takes it off its network (the engine's port proxy ends
the connections through it, and nothing new gets through); `partition` drops its packets
silently (connections stay open, nothing arrives either way).

The container sits on a network of its own and publishes its port on the engine's loopback;
`close()` removes both, whatever the test did.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.brokers import Kind, free_port, image


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`docker ARGS`, bounded, its output captured; the caller checks the return code."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass(frozen=True)
class Recipe:
    kind: Kind
    port: int
    """The broker's port inside the container."""
    hello: bytes
    """What a client says first; a broker that is up answers it (NATS speaks first)."""


KAFKA_API_VERSIONS = struct.pack(">ihhih", 11, 18, 0, 1, 1) + b"t"
"""A Kafka ApiVersions v0 request (size, api key 18, version 0, correlation id, client id)."""

RECIPES: dict[str, Recipe] = {
    "redis-streams": Recipe("redis", 6379, b"PING\r\n"),
    "rabbitmq": Recipe("rabbitmq", 5672, b"AMQP\x00\x00\x09\x01"),
    "nats": Recipe("nats", 4222, b""),
    "kafka": Recipe("kafka", 9092, KAFKA_API_VERSIONS),
}
"""The backends whose broker a test may run in a container of its own (Kafka: the Tansu
stand-in of deploy/images, which keeps everything in memory, so a restart empties it)."""


class BrokerContainer:
    """Same face as `tests.e2e.private_broker.PrivateBroker`: url, start(), kill(), close()."""

    def __init__(self, backend: str, password: str) -> None:
        self.backend = backend
        self.recipe = RECIPES[backend]
        self.password = password
        self.port = free_port()
        self.name = f"orderbus-{backend}-{uuid.uuid4().hex[:8]}"
        self.network = self.name
        self.dir = Path(tempfile.mkdtemp(prefix="orderbus-container-"))
        self.created = False

    @property
    def url(self) -> str:
        host = f"127.0.0.1:{self.port}"
        return {
            "redis": f"redis://:{self.password}@{host}/0",
            "rabbitmq": f"amqp://orderbus:{self.password}@{host}/",
            "nats": f"nats://orderbus:{self.password}@{host}",
            "kafka": f"kafka://{host}",
        }[self.recipe.kind]

    def _run_args(self) -> list[str]:
        kind, password = self.recipe.kind, self.password
        # Data in the server's default place in the container (Redis: its working directory;
        # NATS: its default store), which outlives `docker kill` and `docker start`.
        if kind == "redis":  # every write on disk before the reply: a kill loses nothing acked
            return [
                image(kind),
                *("redis-server", "--requirepass", password),
                *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
            ]
        if kind == "nats":
            return [image(kind), "-js", "--user", "orderbus", "--pass", password]
        if kind == "kafka":  # Tansu names itself to clients by the address they dial
            return ["-e", f"ADVERTISED_LISTENER_URL=tcp://127.0.0.1:{self.port}", image(kind)]
        conf = self.dir / "90-test.conf"
        conf.write_text(
            f"default_user = orderbus\ndefault_pass = {password}\nloopback_users = none\n"
        )
        conf.chmod(0o644)
        return ["-v", f"{conf}:/etc/rabbitmq/conf.d/90-test.conf:ro", image(kind)]

    def start(self) -> None:
        """Create and start the container the first time, start it again after a kill."""
        if not self.created:
            made = docker("network", "create", self.network)
            assert made.returncode == 0, made.stderr
            self.created = True
            ran = docker(
                "run", "-d", "--name", self.name, "--network", self.network,
                "-p", f"127.0.0.1:{self.port}:{self.recipe.port}",
                *self._run_args(),
            )  # fmt: skip
            assert ran.returncode == 0, ran.stderr
        else:
            started = docker("start", self.name)
            assert started.returncode == 0, started.stderr
        self.wait_until_answering()

    def answers(self) -> bool:
        """Whether the broker itself answers (the engine's port proxy accepts before it)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.settimeout(1)
                if self.recipe.hello:
                    sock.sendall(self.recipe.hello)
                return bool(sock.recv(16))
        except OSError:
            return False

    def wait_until_answering(self, within_s: float = 120) -> None:
        deadline = time.monotonic() + within_s
        while not self.answers():
            if time.monotonic() > deadline:
                logs = docker("logs", "--tail", "20", self.name).stdout
                raise TimeoutError(f"{self.name} did not answer within {within_s}s:\n{logs}")
            time.sleep(0.2)

    def kill(self) -> None:
        killed = docker("kill", self.name)
        assert killed.returncode == 0, killed.stderr
        docker("wait", self.name)

    def pause(self) -> None:
        paused = docker("pause", self.name)
        assert paused.returncode == 0, paused.stderr

    def unpause(self) -> None:
        thawed = docker("unpause", self.name)
        assert thawed.returncode == 0, thawed.stderr

    def disconnect(self) -> None:
        cut = docker("network", "disconnect", self.network, self.name)
        assert cut.returncode == 0, cut.stderr

    def connect(self) -> None:
        joined = docker("network", "connect", self.network, self.name)
        assert joined.returncode == 0, joined.stderr

    def _drop(self, action: str) -> None:
        pid = docker("inspect", "-f", "{{.State.Pid}}", self.name).stdout.strip()
        port = str(self.recipe.port)
        for chain, match in (("INPUT", "--dport"), ("OUTPUT", "--sport")):
            rule = [chain, "-p", "tcp", match, port, "-j", "DROP"]
            done = subprocess.run(
                ["nsenter", "-t", pid, "-n", "iptables", action, *rule],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert done.returncode == 0, f"iptables {action} {rule} in {self.name}: {done.stderr}"

    def partition(self) -> None:
        """Drop every packet to and from the broker's port inside the container's network
        namespace (needs root): connections stay open and nothing arrives either way, as in a
        network partition. Unlike `disconnect`, which ends them: the engine's port proxy
        closes the connections it carried."""
        self._drop("-I")

    def heal(self) -> None:
        self._drop("-D")

    def close(self) -> None:
        """Remove the container and its network, whatever state the test left them in (a
        paused container is removed too); what could not be removed is reported."""
        failures: list[str] = []
        if self.created:
            for args in (("rm", "-f", "-v", self.name), ("network", "rm", self.network)):
                try:
                    done = docker(*args)
                except subprocess.TimeoutExpired:
                    failures.append(f"docker {' '.join(args)}: timed out")
                    continue
                if done.returncode != 0:
                    failures.append(f"docker {' '.join(args)}: {done.stderr.strip()}")
        shutil.rmtree(self.dir, ignore_errors=True)
        assert not failures, failures
