"""Choosing a backend: one table, a did-you-mean on typos, URLs checked and never leaked."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bus import BACKENDS, BusSettings, backend_class, create_bus
from bus.backends.kafka import bootstrap_servers
from bus.backends.memory.bus import MemoryBus
from bus.urls import redact
from services.billing.settings import BillingSettings
from services.runtime.settings import ServiceSettings, advertised_url


def test_default_backend_is_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUS_BACKEND", raising=False)
    monkeypatch.delenv("BUS_URL", raising=False)
    assert isinstance(create_bus(), MemoryBus)


def test_backend_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUS_BACKEND", "rabbitmq")
    monkeypatch.setenv("BUS_PREFETCH", "7")
    settings = BusSettings()
    assert settings.backend == "rabbitmq"
    assert settings.prefetch == 7
    assert settings.resolved_url == "amqp://guest:guest@127.0.0.1:5672/"


def test_a_typo_gets_a_did_you_mean() -> None:
    expected = r"unknown backend 'redis-stream'; did you mean 'redis-streams'\?"
    with pytest.raises(ValidationError, match=expected):
        BusSettings(backend="redis-stream")


def test_an_unknown_backend_lists_the_choices() -> None:
    expected = r"unknown backend 'zeromq' \(choose from memory, redis-pubsub"
    with pytest.raises(ValidationError, match=expected):
        BusSettings(backend="zeromq")


@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_backend_imports_and_declares_itself(name: str) -> None:
    cls = backend_class(name)
    assert cls.name == name
    assert cls.capabilities.fan_out  # every backend fans out; the rest differ


def test_a_wrong_scheme_names_the_backend_and_hides_the_password() -> None:
    with pytest.raises(ValidationError) as caught:
        BusSettings(backend="rabbitmq", url="redis://admin:s3cr3t@broker:6379/0")
    message = str(caught.value)
    assert "does not suit backend 'rabbitmq'" in message
    assert "amqp://" in message
    assert "s3cr3t" not in message
    assert "admin:***@broker:6379" in message


def test_a_url_with_a_bad_port_is_refused_without_leaking() -> None:
    with pytest.raises(ValidationError) as caught:
        BusSettings(backend="nats", url="nats://user:hunter2@host:99999")
    assert "hunter2" not in str(caught.value)


def test_settings_repr_hides_the_url() -> None:
    settings = BusSettings(backend="rabbitmq", url="amqp://guest:s3cr3t@127.0.0.1:5672/")
    assert "s3cr3t" not in repr(settings)
    assert settings.safe_url == "amqp://guest:***@127.0.0.1:5672/"


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("amqp://guest:guest@host:5672/vh", "amqp://guest:***@host:5672/vh"),
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("nats://host:4222", "nats://host:4222"),
        ("kafka://a:9092,b:9092", "kafka://a:9092,b:9092"),
        ("nats://s3cr3tTOKEN@host:4222", "nats://***@host:4222"),  # a NATS token
        ("nats://u:p@a:4222,b:4222", "nats://u:***@a:4222,b:4222"),
        ("redis://host:6379/0?password=s3cr3t&db=1", "redis://host:6379/0?password=***&db=1"),
        ("rediss://host/0?ssl_keyfile_password=x", "rediss://host/0?ssl_keyfile_password=***"),
        ("nats://host:4222?token=s3cr3t", "nats://host:4222?token=***"),
        ("amqps://host/?auth_token=x#frag-s3cr3t", "amqps://host/?auth_token=***"),
    ],
)
def test_redact(url: str, safe: str) -> None:
    assert redact(url) == safe


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("kafkas://broker:9093", "kafkas:// is not supported: TLS to Kafka is not set up"),
        ("kafka://alice:s3cr3t@broker:9092", "backend 'kafka' takes no credentials"),
    ],
)
def test_a_kafka_url_the_bus_would_not_honour_is_refused(url: str, reason: str) -> None:
    """Rather than connect in plaintext where the URL asks for TLS, or drop credentials."""
    with pytest.raises(ValidationError) as caught:
        BusSettings(backend="kafka", url=url)
    assert reason in str(caught.value)
    assert "s3cr3t" not in str(caught.value)


def test_kafka_takes_a_list_of_bootstrap_servers_and_the_others_one_host() -> None:
    settings = BusSettings(backend="kafka", url="kafka://a:9092,b:9093")
    assert bootstrap_servers(settings.resolved_url) == ["a:9092", "b:9093"]
    with pytest.raises(ValidationError, match="expected kafka://host:port"):
        BusSettings(backend="kafka", url="kafka://a:9092,b:port")
    with pytest.raises(ValidationError, match="takes one host:port"):
        BusSettings(backend="redis-streams", url="redis://a:6379,b:6379/0")
    for nameless in ("kafka://:9092", "kafka://a:9092,:9093", "nats://u:p@:4222"):
        with pytest.raises(ValidationError, match="names no host"):
            BusSettings(backend="nats" if nameless.startswith("nats") else "kafka", url=nameless)


def test_bounds_are_enforced() -> None:
    with pytest.raises(ValidationError, match="prefetch"):
        BusSettings(prefetch=0)
    with pytest.raises(ValidationError, match="max_event_bytes"):
        BusSettings(max_event_bytes=10)


def test_an_instance_advertises_the_host_it_is_told_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERBUS_ADVERTISED_HOST", "10.1.2.3")
    settings = ServiceSettings(host="0.0.0.0")  # noqa: S104 - as in a container
    assert advertised_url(settings, BillingSettings()) == "http://10.1.2.3:8002"
    monkeypatch.setenv("ORDERBUS_ADVERTISED_HOST", "10.1.2.3/evil")
    with pytest.raises(ValidationError, match="ORDERBUS_ADVERTISED_HOST"):
        ServiceSettings()
