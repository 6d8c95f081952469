"""The fixture layer's order of preference, decided without any broker or Docker engine."""

from __future__ import annotations

import pytest

from tests.brokers import KINDS, Kind, Offer, brokers_required, choose, env_var


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
