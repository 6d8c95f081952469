"""The live dashboard, served by every notification instance: `GET /dashboard`.

Its feed: every service instance publishes `instance_activity` (what it handled, its counters,
a heartbeat); every notification instance receives all of them (a group of its own) and
forwards them over `/ws` to its dashboard clients, the same relay as notifications. The page
needs nothing else live. `GET /dashboard/api/state` gives the backend and its guarantees, the
instances (alive if heard from within `ALIVE_S`), published/processed per service from their
outbox and inbox, and what waits in the broker (`bus.probes`: queued, unacknowledged, dead
letters).
The controls are admin endpoints (`Authorization: Bearer <ORDERBUS_ADMIN_TOKEN>`); they reach
the instances at the URL each one advertises in its activity. So does the request to record:
the instances record their events only while a dashboard with a browser asks them to
(`keep_recording`). Anything that can publish on the
broker can send an activity report, so where a token is set only reports signed with it (and
recent) are believed: no event chooses where the token is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.responses import FileResponse
from pydantic import SecretStr

from bus import backend_info
from bus.probes import Probe, open_probe
from contracts import ORDER_CREATED, CloudEvent, InstanceActivity
from services.console.controls import ControlsClient
from services.notification.live import LiveClients
from services.runtime import activity as recording
from services.runtime.activity import signed_fields
from services.runtime.admin import admin_guard, report_signed
from services.runtime.service import Runtime
from services.runtime.settings import SUBSCRIBERS

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
FILES = {"app.js": "text/javascript", "style.css": "text/css"}
ALIVE_S = 6.0
"""An instance unheard for longer (three missed heartbeats) is shown as gone."""
FORGET_S = 300.0
MAX_INSTANCES = 256
BACKLOG_EVERY_S = 2.0
WATCHING_EVERY_S = 0.5
"""How often `keep_recording` looks for a browser on the activity feed."""
ASK_TIMEOUT_S = 2.0
SIGNED_FOR_S = 30.0
"""A signed report older (or further ahead, clocks differ) is not believed: a copy replayed
later could name an address that is no longer the instance's."""


class Dashboard:
    def __init__(self, clients: LiveClients) -> None:
        self.clients = clients
        self.latest: dict[str, InstanceActivity] = {}
        self.heard_at: dict[str, float] = {}
        self.backlog: dict[str, dict[str, int | None]] = {}
        """Per subscriber service, from the broker: `lag`, `pending`, `dead_letters`..."""
        self.token: SecretStr | None = None
        """The controls' admin token: set, reports must be signed with it."""
        self.refused = 0
        """Reports not believed: unsigned, signed with another token, or stale."""
        self._asked_at: dict[str, float] = {}
        """When each instance was last asked to record its events (`ask_to_record`)."""

    async def on_activity(self, event: CloudEvent) -> None:
        """A broadcast handler: remember the instance's latest report, forward the event."""
        activity = InstanceActivity.model_validate(event.data)
        if self.token is not None and not self._signed(activity, self.token):
            self.refused += 1
            if self.refused == 1:  # one line, not one a heartbeat: the count is in the state
                log.warning(
                    "activity of %r not believed: not signed with this admin token, or stale",
                    activity.instance,
                )
            return
        previous = self.latest.get(activity.instance)
        if previous is not None and _not_newer(activity, previous):
            return  # a copy sent again, or late: the instance has said something since
        if activity.service == "notification":
            self.clients.peer_reported(activity.instance, activity.clients)
        self._forget_old()
        if activity.instance in self.latest or len(self.latest) < MAX_INSTANCES:
            self.latest[activity.instance] = activity.model_copy(update={"events": []})
            self.heard_at[activity.instance] = time.monotonic()
        await self.clients.deliver("activity", None, {"type": "activity"} | event.data)

    @staticmethod
    def _signed(activity: InstanceActivity, token: SecretStr) -> bool:
        at = activity.reported_at
        if at is None or abs((datetime.now(UTC) - at).total_seconds()) > SIGNED_FOR_S:
            return False
        return report_signed(token, activity.signature, at, *signed_fields(activity))

    def _forget_old(self) -> None:
        horizon = time.monotonic() - FORGET_S
        for instance in [i for i, t in self.heard_at.items() if t < horizon]:
            self.latest.pop(instance, None)
            self.heard_at.pop(instance, None)

    def alive(self, service: str | None = None) -> list[InstanceActivity]:
        horizon = time.monotonic() - ALIVE_S
        return sorted(
            (
                a
                for i, a in self.latest.items()
                if self.heard_at[i] > horizon and service in (None, a.service)
            ),
            key=lambda a: a.instance,
        )

    def progress(self) -> dict[str, dict[str, int]]:
        """Per subscriber service: `order_created` events the order outbox published and the
        service's inbox processed (durable counts: replicas share a database, so they agree).
        The difference is in flight, queued, or dead-lettered."""
        published = max((a.totals.get("published", 0) for a in self.alive("order")), default=0)
        progress: dict[str, dict[str, int]] = {}
        for service in SUBSCRIBERS:
            reports = self.alive(service)
            if reports:
                processed = max(a.totals.get("processed", 0) for a in reports)
                progress[service] = {"published": published, "processed": processed}
        return progress

    async def watch_backlog(self, runtime: Runtime) -> None:
        """A background task: while a dashboard is open on this instance, ask the broker every
        `BACKLOG_EVERY_S` how much waits for each subscriber service (`bus.probes`: its own
        connection, each question bounded by a timeout). Nobody watching, nothing is asked:
        the broker's group coordinator has better things to do."""
        probe: Probe | None = None
        try:
            while not runtime.stopping.is_set():
                if self.clients.watching("activity"):
                    probe = probe or open_probe(runtime.settings.bus)
                    await self._ask(probe, runtime.settings.metrics_probe_timeout_s)
                await asyncio.sleep(BACKLOG_EVERY_S)
        finally:
            if probe is not None:
                with contextlib.suppress(Exception):
                    await probe.close()

    async def keep_recording(self, runtime: Runtime) -> None:
        """A background task: while a browser follows the activity feed here, ask every
        instance heard of to record its events (`ask_to_record`), again every third of
        `WATCH_S`, and at once an instance not asked yet. Nobody watching, nobody is asked,
        and each instance stops recording when its last request runs out: a record costs
        each delivery some work that nobody would see."""
        async with httpx.AsyncClient(timeout=ASK_TIMEOUT_S) as client:
            while not runtime.stopping.is_set():
                if self.clients.watching("activity"):
                    renew_s = recording.WATCH_S / 3
                    now = time.monotonic()
                    alive = self.alive()
                    known = {a.instance for a in alive}
                    self._asked_at = {i: t for i, t in self._asked_at.items() if i in known}
                    due = [
                        a
                        for a in alive
                        if now - self._asked_at.get(a.instance, -renew_s) >= renew_s
                    ]
                    await self.ask_to_record(client, due)
                else:
                    self._asked_at.clear()
                await asyncio.sleep(WATCHING_EVERY_S)

    async def ask_to_record(
        self, client: httpx.AsyncClient, instances: Sequence[InstanceActivity]
    ) -> None:
        """Ask `instances` to record their events for the next `WATCH_S` (`POST
        /admin/watch`, with the admin token). Without a token there is no asking, and the
        instances record everything; one that does not answer is asked again later."""
        if self.token is None or not instances:
            return
        headers = {"Authorization": f"Bearer {self.token.get_secret_value()}"}
        now = time.monotonic()
        for instance in instances:
            self._asked_at[instance.instance] = now
        await asyncio.gather(*(self._ask_one(client, a, headers) for a in instances))

    @staticmethod
    async def _ask_one(
        client: httpx.AsyncClient, instance: InstanceActivity, headers: dict[str, str]
    ) -> None:
        try:
            answer = await client.post(
                f"{instance.url}/admin/watch",
                json={"seconds": recording.WATCH_S},
                headers=headers,
                timeout=ASK_TIMEOUT_S,
            )
        except Exception as exc:  # noqa: BLE001 - a view: asked again at the next round
            log.debug("%s not asked to record: %s", instance.instance, type(exc).__name__)
            return
        if answer.status_code != 200:
            log.debug("%s not asked to record: %d", instance.instance, answer.status_code)

    async def _ask(self, probe: Probe, timeout_s: float) -> None:
        for service in SUBSCRIBERS:
            try:
                async with asyncio.timeout(timeout_s):
                    found = await probe.backlog(ORDER_CREATED, service)
                self.backlog[service] = asdict(found)
            except Exception as exc:  # noqa: BLE001 - a view: show "-" and go on
                self.backlog.pop(service, None)
                log.debug("backlog of %s unknown: %s", service, type(exc).__name__)


def dashboard_routes(runtime: Runtime, dashboard: Dashboard) -> APIRouter:
    router = APIRouter(prefix="/dashboard")
    admin = APIRouter(
        prefix="/api",
        tags=["admin"],
        dependencies=[Depends(admin_guard(runtime.settings.admin_token))],
    )
    controls = ControlsClient(runtime, dashboard)
    dashboard.token = runtime.settings.admin_token

    @router.get("", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @router.get("/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in FILES:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dashboard file {name!r}")
        return FileResponse(STATIC / name, media_type=FILES[name])

    @router.get("/api/state")
    async def state() -> dict[str, Any]:
        backend = runtime.settings.bus.backend
        now = time.monotonic()
        return {
            "served_by": runtime.instance,
            "backend": backend,
            "capabilities": asdict(backend_info(backend).capabilities),
            "admin": runtime.settings.admin_token is not None,
            "instances": [
                a.model_dump(mode="json", exclude={"events", "signature"})
                | {"heard_s_ago": round(now - dashboard.heard_at[a.instance], 1)}
                for a in dashboard.alive()
            ],
            "progress": dashboard.progress(),
            "backlog": dashboard.backlog,
            "activity_refused": dashboard.refused,
        }

    controls.install(admin)
    router.include_router(admin)
    return router


def _not_newer(activity: InstanceActivity, previous: InstanceActivity) -> bool:
    return (
        activity.reported_at is not None
        and previous.reported_at is not None
        and activity.reported_at <= previous.reported_at
    )
