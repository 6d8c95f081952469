"""The fixture layer's order of preference, decided without any broker or Docker engine."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests import brokers
from tests.brokers import KINDS, Choice, Kind, Offer, brokers_required, choose, env_var


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("offer", "source"),
    [
        (Offer(env_url="x://y", docker=True, binary=True, loopback=True), "env"),
        (Offer(env_url=None, docker=True, binary=True, loopback=True), "container"),
        (Offer(env_url=None, docker=False, binary=True, loopback=True), "binary"),
        (Offer(env_url=None, docker=False, binary=False, loopback=True), "loopback"),
        (Offer(env_url="", docker=False, binary=False, loopback=True), "loopback"),
        (Offer(env_url=None, docker=False, binary=False, loopback=False), None),
    ],
)
def test_order_of_preference(kind: Kind, offer: Offer, source: str | None) -> None:
    assert choose(kind, offer).source == source


def test_an_engine_without_the_image_is_no_container_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing is pulled: an engine that lacks the image leaves the choice to the next source."""
    held = {"orderbus-local/redis:bookworm"}
    monkeypatch.setattr(brokers, "docker_has", lambda image: image in held)
    monkeypatch.delenv("ORDERBUS_TEST_REDIS_URL", raising=False)
    monkeypatch.delenv("ORDERBUS_REDIS_IMAGE", raising=False)
    assert not brokers.offer("redis").docker  # the pinned redis:7.4.2-alpine is not there
    monkeypatch.setenv("ORDERBUS_REDIS_IMAGE", "orderbus-local/redis:bookworm")
    assert brokers.offer("redis").docker
    assert "orderbus-local/redis:bookworm" in choose("redis", brokers.offer("redis")).reason


def test_nothing_available_says_how_to_get_a_broker() -> None:
    reason = choose("kafka", Offer(None, False, False, False)).reason
    assert env_var("kafka") in reason
    assert "ORDERBUS_TEST_KAFKA_URL" in reason
    assert "127.0.0.1:9092" in reason


def test_ci_requires_brokers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERBUS_REQUIRE_BROKERS", raising=False)
    assert not brokers_required()
    monkeypatch.setenv("ORDERBUS_REQUIRE_BROKERS", "1")
    assert brokers_required()


def test_offer_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(brokers, "docker_has", lambda image: False)
    monkeypatch.setattr(brokers, "port_open", lambda host, port, timeout=0.5: port == 6379)
    monkeypatch.setenv("ORDERBUS_TEST_REDIS_URL", "redis://elsewhere:1/0")
    monkeypatch.delenv("ORDERBUS_TEST_NATS_URL", raising=False)
    monkeypatch.delenv("ORDERBUS_BROKERS", raising=False)
    assert brokers.offer("redis") == Offer("redis://elsewhere:1/0", False, False, True)
    # Only Kafka has a spawnable binary in the fixture layer (Tansu).
    assert brokers.offer("nats") == Offer(None, False, False, False)


@pytest.mark.parametrize(
    ("offer", "expected"),
    [
        (Offer("redis://env:1/0", True, True, True), "redis://env:1/0"),
        (Offer(None, True, True, True), "redis://container:32768/0"),
        (Offer(None, False, False, True), "redis://127.0.0.1:6379/0"),
    ],
)
def test_provide_follows_the_choice(
    monkeypatch: pytest.MonkeyPatch, offer: Offer, expected: str
) -> None:
    @contextlib.contextmanager
    def fake_container(kind: Kind) -> Iterator[str]:
        yield f"{kind}://container:32768/0"

    monkeypatch.setattr(brokers, "offer", lambda kind: offer)
    monkeypatch.setattr(brokers, "container", fake_container)
    if offer.env_url:
        monkeypatch.setenv("ORDERBUS_TEST_REDIS_URL", offer.env_url)
    with brokers.provide("redis") as url:
        assert url == expected


def test_provide_without_a_broker_yields_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(brokers, "offer", lambda kind: Offer(None, False, False, False))
    with brokers.provide("nats") as found:
        assert isinstance(found, Choice)
        assert found.source is None
        assert "ORDERBUS_TEST_NATS_URL" in found.reason


@pytest.mark.parametrize("kind", KINDS)
def test_containers_mode_takes_a_container_or_names_the_missing_image(
    kind: Kind, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ORDERBUS_BROKERS=containers`: a container, whatever else is on offer, or nothing, with
    the image that is missing and how to get it (a URL or a loopback broker is not taken)."""
    monkeypatch.setenv(f"ORDERBUS_{kind.upper()}_IMAGE", f"orderbus-local/{kind}:bookworm")
    with_engine = Offer("x://y", docker=True, binary=True, loopback=True, containers_only=True)
    assert choose(kind, with_engine).source == "container"
    without = Offer("x://y", docker=False, binary=True, loopback=True, containers_only=True)
    missing = choose(kind, without)
    assert missing.source is None
    assert f"orderbus-local/{kind}:bookworm" in missing.reason
    assert "deploy/images/build.sh" in missing.reason


def test_containers_mode_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(brokers, "docker_has", lambda image: False)
    monkeypatch.delenv("ORDERBUS_BROKERS", raising=False)
    assert not brokers.offer("redis").containers_only
    monkeypatch.setenv("ORDERBUS_BROKERS", "containers")
    assert brokers.offer("redis").containers_only
    monkeypatch.setenv("ORDERBUS_BROKERS", "contianers")
    with pytest.raises(ValueError, match="ORDERBUS_BROKERS='contianers'"):
        brokers.offer("redis")


def test_kafka_takes_the_tansu_stand_in_only_when_no_kafka_image_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Compose reads ORDERBUS_KAFKA_IMAGE as an Apache Kafka image: the Tansu stand-in has a
    variable of its own, which the fixture layer falls back to."""
    monkeypatch.delenv("ORDERBUS_KAFKA_IMAGE", raising=False)
    monkeypatch.delenv("ORDERBUS_TANSU_IMAGE", raising=False)
    assert brokers.image("kafka") == brokers.IMAGES["kafka"]
    monkeypatch.setenv("ORDERBUS_TANSU_IMAGE", "orderbus-local/tansu:bookworm")
    assert brokers.image("kafka") == "orderbus-local/tansu:bookworm"
    monkeypatch.setenv("ORDERBUS_KAFKA_IMAGE", "apache/kafka:3.9.0")
    assert brokers.image("kafka") == "apache/kafka:3.9.0"
