"""Injected faults and WebSocket client subscriptions, without a network."""

from __future__ import annotations

from typing import Any, cast

import pytest
from fastapi import WebSocket

from services.notification import live
from services.notification.live import MAX_KEYS, PEER_TTL_S, WARM_UP_S, Client, LiveClients
from services.notification.protocol import Incoming
from services.runtime.faults import Faults, InjectedFailure


def test_fail_next_fails_k_new_events_on_every_attempt() -> None:
    faults = Faults()
    assert not faults.armed, "nothing to check until an operator asks"
    faults.fail(2)
    assert faults.armed
    for event_id in ("a", "b"):
        with pytest.raises(InjectedFailure):
            faults.check(event_id)
    faults.check("c")  # the third new event passes
    with pytest.raises(InjectedFailure):
        faults.check("a")  # a redelivery of a chosen one fails again
    assert faults.fail_next == 0
    assert faults.armed, "the chosen ones still fail on their redeliveries"


def test_fault_bounds() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="count"):
        faults.fail(-1)
    with pytest.raises(ValueError, match="seconds"):
        faults.pause(0)


async def test_pause_resumes_by_itself_and_on_request() -> None:
    faults = Faults()
    faults.pause(0.01)
    assert faults.paused
    await faults.wait_running()  # returns once the pause runs out
    faults.pause(60)
    faults.resume()
    assert not faults.paused


def client() -> Client:
    return Client(cast(WebSocket, object()))


def test_a_client_gets_only_what_it_names() -> None:
    c = client()
    assert not c.wants("notifications", {"order:1"}), "nothing until it names something"
    c.subscribe("customer", "alice")
    assert c.wants("notifications", {"order:1", "customer:alice"})
    assert not c.wants("notifications", {"order:2", "customer:bob"})
    assert not c.wants("activity", None), "activity only for clients that ask for it"
    with pytest.raises(PermissionError, match="admin token"):
        c.subscribe("all", "")
    c.admin = True
    c.subscribe("all", "")
    assert c.wants("notifications", {"order:2", "customer:bob"})


def test_subscriptions_are_bounded() -> None:
    c = client()
    for n in range(MAX_KEYS):
        c.subscribe("order", str(n))
    with pytest.raises(ValueError, match="at most"):
        c.subscribe("order", "one-more")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The live module's monotonic clock, moved by hand."""
    clock = Clock()
    monkeypatch.setattr("services.notification.live.time.monotonic", clock)
    return clock


def test_pushes_are_wanted_while_a_browser_is_here_or_at_a_peer_lately(clock: Clock) -> None:
    clients = LiveClients()
    assert clients.listened_to(), "just started: the peers have not all reported yet"
    clock.now += WARM_UP_S
    assert not clients.listened_to(), "nobody connected anywhere"
    here = clients.admit(cast(WebSocket, object()))
    assert here is not None
    assert clients.listened_to()
    here.feeds = {"activity"}
    assert not clients.listened_to(), "a dashboard watching only the activity wants no push"
    clients.leave(here)
    assert not clients.listened_to()

    clients.peer_reported("notification-2", 3)
    assert clients.listened_to(), "a peer holds browsers"
    clock.now += PEER_TTL_S + 1
    assert not clients.listened_to(), "a peer unheard past the TTL no longer counts"
    clients.peer_reported("notification-2", 1)
    assert clients.listened_to()
    clients.peer_reported("notification-2", 0)
    assert not clients.listened_to(), "its browsers left"


def test_peers_remembered_are_bounded_and_the_silent_make_room(clock: Clock) -> None:
    clients = LiveClients()
    clock.now += WARM_UP_S
    for n in range(live.MAX_PEERS + 10):
        clients.peer_reported(f"forged-{n}", 1)
    assert len(clients._peers) == live.MAX_PEERS
    assert "forged-300" not in clients._peers

    clock.now += PEER_TTL_S + 1  # all of them gone quiet (stopped, or never were)
    clients.peer_reported("notification-new", 1)
    assert set(clients._peers) == {"notification-new"}
    assert clients.listened_to()


@pytest.mark.parametrize(
    "message",
    [
        {"type": "subscribe"},
        {"type": "subscribe", "order_id": "1", "customer_id": "2"},
        {"type": "feeds", "feeds": ["everything"]},
        {"type": "shout"},
    ],
)
def test_bad_client_messages_are_refused(message: dict[str, Any]) -> None:
    import json

    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Incoming.validate_json(json.dumps(message))
