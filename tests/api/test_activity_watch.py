"""An instance records its events for the dashboard only while a dashboard with a browser on
its activity feed asks it to (`POST /admin/watch`); its counters go out all the same.

Billing and notification served for real on loopback (uvicorn, in this process), on one
memory bus: the dashboard reaches billing at the URL billing advertises, as it would across
machines, and the browser is a WebSocket client of the notification service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import uvicorn
import websockets
from pydantic import SecretStr

from bus import Bus
from contracts import INSTANCE_ACTIVITY, ORDER_CREATED, CloudEvent
from orderbus.specs import create_app, own_settings
from services.runtime import activity
from services.runtime.activity import Activity
from services.runtime.http import server_config
from services.runtime.settings import ServiceName, ServiceSettings
from tests.api.conftest import order_event, recording
from tests.brokers import free_port
from tests.integration.conftest import Recorder
from tests.polling import eventually

TOKEN = "test-admin-token-0123456789"
WATCH_S = 0.6
"""Short here, so that the test sees a request to record run out."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test process keeps its own
        yield


@asynccontextmanager
async def served(name: ServiceName, settings: ServiceSettings) -> AsyncIterator[Activity]:
    """`name` listening on a free loopback port; its instance's activity recorder."""
    port = free_port()
    own = own_settings(name).model_copy(update={"port": port})
    app = create_app(name, settings.model_copy(update={"instance_id": f"{name}-1"}), own=own)
    server = _Server(server_config(app, settings, port))
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: _true_or_none(server.started), within_s=10)
        yield app.state.runtime.activity
    finally:
        server.should_exit = True
        await serving


async def _true_or_none(value: bool) -> bool | None:
    return value or None


def recorded(reports: Recorder, instance: str, event: CloudEvent) -> bool:
    """Whether any report of `instance` carried `event` among its events."""
    return any(
        any(e["event_id"] == str(event.id) for e in report.data["events"])
        for report, _ in reports.received
        if report.data["instance"] == instance
    )


def counted_handled(reports: Recorder, instance: str, at_least: int) -> bool:
    return any(
        report.data["counters"].get("handled", 0) >= at_least
        for report, _ in reports.received
        if report.data["instance"] == instance
    )


@pytest.fixture
def settings(settings: ServiceSettings) -> ServiceSettings:
    return settings.model_copy(update={"admin_token": SecretStr(TOKEN), "activity": True})


async def test_events_are_recorded_only_while_a_dashboard_watches(
    settings: ServiceSettings, publisher: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(activity, "WATCH_S", WATCH_S)
    async with (
        recording(settings, INSTANCE_ACTIVITY) as reports,
        served("notification", settings) as notification,
        served("billing", settings) as billing,
    ):
        await eventually(lambda: _true_or_none(not billing.watched), within_s=10)
        unseen = order_event(("KB-001", 1))
        await publisher.publish(ORDER_CREATED, unseen)
        await reports.wait_until(lambda: counted_handled(reports, "billing-1", 1))
        assert not recorded(reports, "billing-1", unseen), "nobody watched: not recorded"

        url = notification.url.replace("http://", "ws://") + "/ws"
        async with websockets.connect(url) as browser:
            assert json.loads(await browser.recv())["type"] == "hello"
            await browser.send(json.dumps({"type": "auth", "token": TOKEN}))
            assert json.loads(await browser.recv()) == {"type": "authorized"}
            await browser.send(json.dumps({"type": "feeds", "feeds": ["activity"]}))
            await eventually(lambda: _true_or_none(billing.watched), within_s=10)
            seen = order_event(("KB-001", 1))
            await publisher.publish(ORDER_CREATED, seen)
            await reports.wait_until(lambda: recorded(reports, "billing-1", seen))
            # Asked again while the browser stays, before the first request runs out.
            first_until = billing.watched_until
            await eventually(
                lambda: _true_or_none(billing.watched_until > first_until), within_s=10
            )

        await eventually(lambda: _true_or_none(not billing.watched), within_s=10)
        after = order_event(("KB-001", 1))
        await publisher.publish(ORDER_CREATED, after)
        await reports.wait_until(lambda: counted_handled(reports, "billing-1", 3))
        assert not recorded(reports, "billing-1", after), "the browser left: not recorded"


def test_without_an_admin_token_every_event_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """No dashboard could ask, so the instance records everything, as before any asking."""
    monkeypatch.setattr(activity, "WATCH_S", 0.0)  # no recording from the start
    url = "http://127.0.0.1:1"
    assert not Activity("billing", "billing-1", url, "memory", SecretStr(TOKEN)).watched
    assert Activity("billing", "billing-1", url, "memory", token=None).watched
