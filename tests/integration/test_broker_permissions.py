"""The generated broker users hold: each service publishes its own topics, consumes its
subscriptions (and dead-letters what fails), and is refused, with an error, on another's.

Redis and NATS run as private processes loaded with the committed files; RabbitMQ is the
shared broker, with the generated definitions imported into a vhost of this test's own, under
user names of its own (RabbitMQ users are global), both deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bus import Bus, BusSettings, Delivery, create_bus, names
from bus.dead_letters import open_store
from bus.port import NotPublished
from contracts import EVENTS, CloudEvent
from orderbus.broker_access.rules import LAPTOP_PASSWORD, OPERATOR, service_rights
from services.runtime.dead_letter_routes import replay_letters
from services.runtime.settings import SERVICES
from tests.brokers import LOOPBACK, brokers_required, port_open, spawned
from tests.polling import eventually

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["redis-streams", "redis-pubsub", "nats", "rabbitmq"]
UrlOf = Callable[[str], str]
"""The broker URL as one user (a service's name, or `operator`)."""


def _unavailable(reason: str) -> None:
    if brokers_required():
        pytest.fail(reason)
    pytest.skip(reason)


@contextlib.contextmanager
def _redis() -> Iterator[UrlOf]:
    if shutil.which("redis-server") is None:
        _unavailable("no redis-server binary to spawn")
    acl = str(ROOT / "deploy/brokers/redis-users.acl")
    with spawned("redis", extra_args=["--aclfile", acl]) as (url, _):
        hostport = url.split("//", 1)[1]
        yield lambda user: f"redis://{user}:{LAPTOP_PASSWORD}@{hostport}"


@contextlib.contextmanager
def _nats() -> Iterator[UrlOf]:
    if shutil.which("nats-server") is None and not Path("/usr/sbin/nats-server").exists():
        _unavailable("no nats-server binary to spawn")
    conf = str(ROOT / "deploy/brokers/nats.conf")
    with spawned("nats", extra_args=["--config", conf]) as (url, _):
        hostport = url.split("//", 1)[1]
        yield lambda user: f"nats://{user}:{LAPTOP_PASSWORD}@{hostport}"


def _rabbitmqctl(*args: str, stdin: str | None = None) -> None:
    subprocess.run(["rabbitmqctl", *args], input=stdin, text=True, check=True, capture_output=True)


def _wait_for_users(vhost: str, users: set[str], timeout: float = 30) -> None:
    """The import goes on in the background: wait until every user has its permissions."""
    deadline = time.monotonic() + timeout
    while True:
        listed = subprocess.run(
            ["rabbitmqctl", "list_permissions", "-q", "-p", vhost],
            capture_output=True,
            text=True,
        ).stdout
        if users <= {line.split("\t")[0] for line in listed.splitlines()}:
            return
        assert time.monotonic() < deadline, f"definitions not imported into {vhost}"
        time.sleep(0.2)


@contextlib.contextmanager
def _rabbitmq() -> Iterator[UrlOf]:
    host, port, _ = LOOPBACK["rabbitmq"]
    if shutil.which("rabbitmqctl") is None or not port_open(host, port):
        _unavailable(f"needs rabbitmqctl and RabbitMQ on {host}:{port}")
    run = uuid.uuid4().hex[:8]
    vhost, prefix = f"orderbus-perm-{run}", f"perm-{run}-"
    document = json.loads((ROOT / "deploy/brokers/rabbitmq-definitions.json").read_text())
    document.pop("_comment")
    for user in document["users"]:
        user["name"] = prefix + user["name"]
    document["vhosts"] = [{"name": vhost}]
    for grant in document["permissions"]:
        grant.update(user=prefix + grant["user"], vhost=vhost)
    _rabbitmqctl("import_definitions", "--format", "json", stdin=json.dumps(document))
    try:
        _wait_for_users(vhost, {u["name"] for u in document["users"]})
        yield lambda user: f"amqp://{prefix}{user}:{LAPTOP_PASSWORD}@{host}:{port}/{vhost}"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _rabbitmqctl("delete_vhost", vhost)
        for user in document["users"]:
            with contextlib.suppress(subprocess.CalledProcessError):
                _rabbitmqctl("delete_user", user["name"])


@pytest.fixture(scope="module", params=BACKENDS)
def broker(request: pytest.FixtureRequest) -> Iterator[tuple[str, UrlOf]]:
    backend = str(request.param)
    spawn = {"nats": _nats, "rabbitmq": _rabbitmq}.get(backend, _redis)
    with spawn() as url_of:
        yield backend, url_of


def _event(topic: str, *, fail: bool = False) -> CloudEvent:
    order_id = str(uuid.uuid4())
    source = EVENTS[topic].source if topic in EVENTS else "/services/order"
    return CloudEvent(
        source=source, type=topic, subject=order_id, data={"order_id": order_id, "fail": fail}
    )


class Received:
    def __init__(self) -> None:
        self.topics: list[str] = []

    async def __call__(self, event: CloudEvent, delivery: Delivery) -> None:
        if isinstance(event.data, dict) and event.data.get("fail"):
            raise RuntimeError("made to fail: to be dead-lettered")
        self.topics.append(event.type)


async def _started(backend: str, url: str) -> Bus:
    bus = create_bus(BusSettings(backend=backend, url=url))
    await bus.start()
    return bus


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_publishes_and_consumes_its_own_and_nothing_else(
    broker: tuple[str, UrlOf], service: str
) -> None:
    backend, url_of = broker
    rights = service_rights(service)
    received = Received()
    # A budget of a second: a failing event is dead-lettered soon, through this user too. Not
    # 0 (one attempt): nats-py can lose a fetched batch to a fetch timeout, and the event
    # JetStream then delivers again would be dead-lettered unhandled.
    settings = BusSettings(
        backend=backend,
        url=url_of(service),
        retry_budget_s=1,
        retry_backoff_ms=100,
        redelivery_after_ms=1_000,  # Redis Streams retries by idle time
    )
    own = create_bus(settings)
    for topic in rights.consumes:
        own.subscribe(topic, received, group=service, consumer=f"{service}-1")
    for topic in rights.broadcasts:
        group = names.instance_group(f"{service}-1", topic)
        own.subscribe(topic, received, group=group, consumer=f"{service}-1", ephemeral=True)
    publishers: dict[str, Bus] = {}
    try:
        await own.start()

        # Its own topics: accepted (on RabbitMQ a topic nobody consumes here is returned,
        # which the broker does only after it let the publish in).
        for topic in rights.publishes:
            with contextlib.suppress(NotPublished):
                await own.publish(topic, _event(topic))

        # Its subscriptions: what the rightful publisher sends arrives in its group.
        for topic in rights.consumes:
            publisher = EVENTS[topic].publisher
            if publisher not in publishers:
                publishers[publisher] = await _started(backend, url_of(publisher))
            await publishers[publisher].publish(topic, _event(topic))
        expected = set(rights.consumes) | set(rights.broadcasts)

        async def all_arrived() -> bool | None:
            return True if expected <= set(received.topics) else None

        await eventually(all_arrived)

        # What it fails to handle goes to its own dead letters, which it may list.
        if rights.consumes:
            topic = rights.consumes[0]
            await publishers[EVENTS[topic].publisher].publish(topic, _event(topic, fail=True))
            store = open_store(settings)

            async def dead_lettered() -> bool | None:
                return True if await store.list(service) else None

            await eventually(dead_lettered)
            # Replaying republishes to a topic it only consumes: refused, said, and kept.
            listed = await store.list(service)
            result = await replay_letters(store, service, listed, own, set(rights.consumes))
            assert result["replayed"] == 0
            assert all("as the operator" in r["reason"] for r in result["refused"])
            # (<=: JetStream hands a new durable consumer what earlier tests left in the stream,
            # so another dead letter may arrive meanwhile.)
            assert {s.ref for s in listed} <= {s.ref for s in await store.list(service)}

        # Another service's topic: refused with an error, not dropped without a word. NATS
        # answers a refused request with nothing (the client logs the violation): a timeout.
        foreign = "order_confirmed" if service != "order" else "invoice_issued"
        with pytest.raises(Exception) as refused:  # noqa: PT011 - each broker has its own
            await asyncio.wait_for(own.publish(foreign, _event(foreign)), 30)
        assert not isinstance(refused.value, NotPublished), "RabbitMQ let it in"
        if backend != "nats":
            assert not isinstance(refused.value, TimeoutError), repr(refused.value)
    finally:
        await own.close()
        for bus in publishers.values():
            await bus.close()


async def test_the_operator_may_publish_any_topic(broker: tuple[str, UrlOf]) -> None:
    backend, url_of = broker
    bus = await _started(backend, url_of(OPERATOR))
    try:
        with contextlib.suppress(NotPublished):
            await bus.publish("order_confirmed", _event("order_confirmed"))
    finally:
        await bus.close()
