"""Live pushes (`notification_pushed`) go on the broker only while a browser listens: to this
notification instance, or to a peer whose activity report says it holds clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bus import Bus
from contracts import (
    INSTANCE_ACTIVITY,
    NOTIFICATION_PUSHED,
    ORDER_CREATED,
    CloudEvent,
    InstanceActivity,
)
from services.notification import live
from services.runtime.settings import ServiceSettings
from tests.api.conftest import Running, order_event, recording
from tests.integration.conftest import Recorder
from tests.polling import eventually


@pytest.fixture
async def pushes(settings: ServiceSettings) -> AsyncIterator[Recorder]:
    """Every push published, as any notification instance would receive it."""
    async with recording(settings, NOTIFICATION_PUSHED) as recorder:
        yield recorder


def peer_report(clients: int) -> CloudEvent:
    """What another notification instance says of itself every two seconds."""
    now = datetime.now(UTC)
    report = InstanceActivity(
        service="notification",
        instance="notification-peer",
        url="http://127.0.0.1:1",
        backend="memory",
        started_at=now,
        counters={},
        clients=clients,
        events=[],
        reported_at=now,
    )
    return CloudEvent.of(
        report, type=INSTANCE_ACTIVITY, source="/services/notification/notification-peer"
    )


async def presence_when(
    notification: httpx.AsyncClient, *, listened_to: bool, unheard: int | None = None
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        found: dict[str, Any] = (await notification.get("/presence")).json()
        if found["listened_to"] != listened_to:
            return None
        if unheard is not None and found["pushes_unheard"] != unheard:
            return None
        return found

    return await eventually(probe, within_s=10)


async def test_a_push_is_published_only_while_a_browser_listens_somewhere(
    publisher: Bus, running: Running, pushes: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No peer here but the test's: nothing to wait for before believing nobody listens.
    monkeypatch.setattr(live, "WARM_UP_S", 0.0)
    async with running("notification") as notification:
        nobody = order_event(("KB-001", 1))
        await publisher.publish(ORDER_CREATED, nobody)
        found = await presence_when(notification, listened_to=False, unheard=1)
        assert (found["clients"], found["pushes_dropped"]) == (0, 0)
        assert pushes.received == [], "no browser anywhere: nothing was published"

        await publisher.publish(INSTANCE_ACTIVITY, peer_report(clients=1))
        await presence_when(notification, listened_to=True)
        heard = order_event(("KB-001", 1))
        await publisher.publish(ORDER_CREATED, heard)
        await pushes.wait_for_count(1, timeout=10)
        push, _ = pushes.received[0]
        assert push.subject == heard.subject, "the push of the order a peer's browser may follow"
        assert push.data["message"]["kind"] == "received"

        await publisher.publish(INSTANCE_ACTIVITY, peer_report(clients=0))
        await presence_when(notification, listened_to=False)
        await publisher.publish(ORDER_CREATED, order_event(("KB-001", 1)))
        await presence_when(notification, listened_to=False, unheard=2)
        assert len(pushes.received) == 1, "the peer's browsers left: nothing more published"
